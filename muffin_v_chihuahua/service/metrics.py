"""The service's Prometheus metrics: the one place that names them (GET /metrics, the text format).

Each app has its own CollectorRegistry, so that several apps (tests) never share counts. Metrics observe,
they never decide: nothing here refuses, waits or changes an answer.

    muffin_v_chihuahua_http_requests_total{method,endpoint,status}     requests answered
    muffin_v_chihuahua_http_request_duration_seconds{method,endpoint}  time to answer (histogram)
    muffin_v_chihuahua_http_requests_in_flight                         requests being answered now
    muffin_v_chihuahua_requests_refused_total{reason}                  requests refused for capacity
    muffin_v_chihuahua_inference_duration_seconds                      time the model takes per batch (histogram)
    muffin_v_chihuahua_images_per_request                              images in each prediction request (histogram)
    muffin_v_chihuahua_verdicts_total{verdict}                         verdicts given: muffin, chihuahua, neither
    muffin_v_chihuahua_model_info{backbone,engine,model_version,model_sha256,app_version}  1 once loaded

`endpoint` is the route's template (`/predict`), never the raw path; a path no route matches is "unmatched".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import InfoMetricFamily
from prometheus_client.registry import Collector

PREFIX = "muffin_v_chihuahua_"
UNMATCHED = "unmatched"  # the endpoint label of a request no route matched (a 404): one label, whatever the path
# Images per request: up to the largest MAX_FILES anyone should set.
IMAGE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
MODEL_INFO_LABELS = ("backbone", "engine", "model_version", "model_sha256")


class _ModelInfo(Collector):
    """muffin_v_chihuahua_model_info, asked of the model at each scrape: absent until the model is loaded."""

    def __init__(self, identity: Callable[[], dict[str, Any] | None], app_version: str):
        self.identity = identity
        self.app_version = app_version

    def collect(self) -> Iterable[Any]:
        identity = self.identity()
        if not identity:
            return []
        family = InfoMetricFamily(PREFIX + "model", "the model this service runs (1 once it is loaded)")
        labels = {name: str(identity.get(name, "")) for name in MODEL_INFO_LABELS}
        family.add_metric([], {**labels, "app_version": self.app_version})
        return [family]


class Metrics:
    """The metrics of one app, in their own registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, identity: Callable[[], dict[str, Any] | None], app_version: str):
        """identity: the loaded model's identity (as GET / answers it), or None while it is not loaded."""
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            PREFIX + "http_requests",
            "HTTP requests answered, by method, endpoint (route template) and status",
            ["method", "endpoint", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            PREFIX + "http_request_duration_seconds",
            "time from a request's arrival to the end of its answer, by method and endpoint",
            ["method", "endpoint"],
            registry=registry,
        )
        self.in_flight = Gauge(
            PREFIX + "http_requests_in_flight", "HTTP requests being answered now", registry=registry
        )
        self.refused_requests = Counter(
            PREFIX + "requests_refused",
            "requests refused because the service was at capacity, by reason",
            ["reason"],
            registry=registry,
        )
        self.inference_duration = Histogram(
            PREFIX + "inference_duration_seconds",
            "time the model takes to classify one request's images (decoding excluded)",
            registry=registry,
        )
        self.images = Histogram(
            PREFIX + "images_per_request",
            "images in each prediction request (POST /predict, /v2 infer) that reached the model",
            buckets=IMAGE_BUCKETS,
            registry=registry,
        )
        self.verdicts = Counter(
            PREFIX + "verdicts", "verdicts given, by verdict (neither included)", ["verdict"], registry=registry
        )
        registry.register(_ModelInfo(identity, app_version))

    def refused(self, reason: str) -> None:
        """Count a request refused for capacity (admission control calls this), e.g. reason="memory budget"."""
        self.refused_requests.labels(reason=reason).inc()

    def answered(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, endpoint=endpoint, status=str(status)).inc()
        self.request_duration.labels(method=method, endpoint=endpoint).observe(seconds)

    def inferred(self, seconds: float) -> None:
        self.inference_duration.observe(seconds)

    def predicted(self, verdicts: Iterable[str]) -> None:
        """One prediction request's verdicts, in order: its image count and each verdict."""
        verdicts = list(verdicts)
        self.images.observe(len(verdicts))
        for verdict in verdicts:
            self.verdicts.labels(verdict=verdict).inc()

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (serve with `content_type`)."""
        return generate_latest(self.registry)
