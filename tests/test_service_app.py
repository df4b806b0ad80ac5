"""The app made from its parts (muffin_v_chihuahua/service/app.py: create_app), in process around a stub
classifier: the loader called once with the settings, every route of the three routers, the CPUs line at start,
and uvicorn's own refusal handed the service's answer. The real server (run()): test_service.py."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from muffin_v_chihuahua import cpus
from muffin_v_chihuahua.service.app import create_app
from muffin_v_chihuahua.service.settings import Settings
from tests.stub_classifier import StubClassifier, client

ROUTES = {
    "/",
    "/readyz",
    "/livez",
    "/metrics",
    "/card",
    "/predict",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/versions/{version}/infer",
}


def test_the_model_is_loaded_once_with_the_settings_given():
    settings, asked = Settings(engine="onnx", max_files=3), []

    def loader(given: Settings) -> StubClassifier:
        asked.append(given)
        return StubClassifier()

    with client(settings, loader) as service:
        service.app.state.model.done.wait()
        assert service.get("/").json()["max_files"] == 3
    assert asked == [settings]


def test_every_route_of_its_routers_is_in_the_schema():
    with client() as service:
        paths = set(service.get("/openapi.json").json()["paths"])
    assert paths == ROUTES


def test_the_start_names_the_cpus_it_sized_its_workers_by(monkeypatch, caplog):
    monkeypatch.setenv(cpus.OVERRIDE_VARIABLE, "1")
    with caplog.at_level(logging.INFO, "uvicorn.error"), client():
        pass
    assert f"CPUs: 1 (${cpus.OVERRIDE_VARIABLE}): 1 inference workers" in caplog.text


def test_uvicorn_s_refusal_past_its_connection_limit_is_the_service_s_and_counted():
    app = create_app(Settings(engine="onnx"), load_model=lambda settings: StubClassifier())
    answer = TestClient(app.state.past_the_limit).post("/predict", content=bytes(1000))  # no lifespan: uvicorn's
    assert answer.status_code == 503 and "busy" in answer.json()["detail"]
    with TestClient(app) as service:
        metrics = service.get("/metrics").text
    assert 'muffin_v_chihuahua_requests_refused_total{reason="connection limit"} 1.0' in metrics
