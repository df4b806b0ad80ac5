"""Each request observed once (muffin_v_chihuahua/service/observing.py), in process around a stub classifier: the
request id echoed or made, the metrics by route template, and the one log line (JSON or readable) with a
prediction's images and verdicts. With a real server and Prometheus's parser: test_service_metrics.py."""

from __future__ import annotations

import json
import logging

import pytest

from muffin_v_chihuahua.service import observing
from muffin_v_chihuahua.service.settings import Settings
from tests.stub_classifier import CHIHUAHUA, GREY, MUFFIN, client

REQUEST_ID = "test-request-0001"


class Kept(logging.Handler):
    """The request lines, each formatted as the service's JSON handler formats it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines():
    """The app with JSON log lines; a function that gives the request lines written since it was last called."""
    with client(Settings(engine="onnx", log_format="json")) as service:
        [handler] = observing.log.handlers  # the one create_app configured
        assert isinstance(handler.formatter, observing.JSONLines)
        kept = Kept()
        kept.setFormatter(handler.formatter)
        observing.log.addHandler(kept)

        def lines() -> list[dict]:
            written, kept.lines = kept.lines, []
            return written

        yield service, lines


def test_a_prediction_s_line_has_its_id_images_and_verdicts(json_lines):
    service, lines = json_lines
    answer = service.post(
        "/predict",
        files=[("files", (name, data, "image/png")) for name, data in (("m", MUFFIN), ("c", CHIHUAHUA), ("g", GREY))],
        headers={"X-Request-ID": REQUEST_ID},
    )
    assert answer.headers["X-Request-ID"] == REQUEST_ID
    [line] = lines()
    assert (line["message"], line["level"], line["logger"]) == ("request", "info", observing.log.name)
    assert (line["request_id"], line["method"], line["path"], line["endpoint"], line["status"]) == (
        REQUEST_ID,
        "POST",
        "/predict",
        "/predict",
        200,
    )
    assert line["images"] == 3 and line["verdicts"] == {"muffin": 1, "chihuahua": 1, "neither": 1}
    assert isinstance(line["duration_seconds"], float) and line["time"].endswith("Z")


def test_a_request_without_a_usable_id_gets_a_new_one(json_lines):
    service, lines = json_lines
    made = {service.get("/livez").headers["X-Request-ID"] for _ in range(2)}
    unusable = service.get("/livez", headers={"X-Request-ID": "x" * 129}).headers["X-Request-ID"]
    assert len(made) == 2 and unusable != "x" * 129 and len(unusable) == 32
    assert {line["request_id"] for line in lines()} == {*made, unusable}


def test_metrics_count_by_route_template_and_unmatched_paths_as_one(json_lines):
    service, lines = json_lines
    service.get("/v2/models/muffin-v-chihuahua/versions/1/ready")
    service.get("/no/such/page")
    metrics = service.get("/metrics").text
    assert 'endpoint="/v2/models/{name}/versions/{version}/ready",method="GET",status="404"} 1.0' in metrics
    assert 'endpoint="unmatched",method="GET",status="404"} 1.0' in metrics
    assert [line["endpoint"] for line in lines()][:2] == ["/v2/models/{name}/versions/{version}/ready", "unmatched"]


def test_the_readable_line_is_in_uvicorn_s_style():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "request", None, None)
    record.request = {
        "request_id": "abc",
        "method": "POST",
        "path": "/predict",
        "status": 200,
        "images": 2,
        "verdicts": {"neither": 1, "muffin": 1},
        "duration_seconds": 0.0841,
    }
    line = observing.Readable("%(levelname)-9s %(message)s").format(record)
    assert line == "INFO:     request abc POST /predict 200 2 images (muffin=1 neither=1) 0.084 s"
