"""The service's health routes (muffin_v_chihuahua/service/health.py) in process, around a stub classifier whose
load a test holds back: /, /readyz, /livez, /metrics and /card before the model is loaded, once it is, and when it
failed to load."""

from __future__ import annotations

from muffin_v_chihuahua import __version__
from muffin_v_chihuahua.classifier import ModelFilesError
from muffin_v_chihuahua.service.settings import Settings
from tests.servers import CARD, PACKAGE
from tests.stub_classifier import GREY, client, gate


def test_while_the_model_loads_only_livez_and_metrics_answer_200_then_health_turns_200():
    held_back = gate()
    with client(load_model=held_back) as service:
        for path in ("/", "/readyz", "/card"):
            answer = service.get(path)
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "1", path
            assert answer.json()["status"] == "loading" and "loading" in answer.json()["detail"], path
        predicted = service.post("/predict", content=GREY, headers={"Content-Type": "image/png"})
        assert predicted.status_code == 503 and predicted.json()["status"] == "loading"
        assert service.get("/livez").json() == {"status": "alive"}
        assert "muffin_v_chihuahua_model_info" not in service.get("/metrics").text
        held_back.open()
        service.app.state.model.done.wait()
        assert service.get("/").status_code == service.get("/readyz").status_code == 200
        assert "muffin_v_chihuahua_model_info{" in service.get("/metrics").text


def test_a_model_that_failed_to_load_is_503_failed_saying_why_without_retry_after():
    failing = gate(ModelFilesError(PACKAGE / "model" / "muffin_v_chihuahua.onnx", "is damaged"))
    failing.open()
    with client(load_model=failing) as service:
        service.app.state.model.done.wait()
        answers = [service.get(path) for path in ("/", "/readyz", "/card")]
    for answer in answers:
        assert answer.status_code == 503 and "Retry-After" not in answer.headers
        body = answer.json()
        assert body["status"] == "failed" and body["detail"].startswith(
            "the model could not be loaded: ModelFilesError"
        )
        assert "muffin_v_chihuahua.onnx is damaged" in body["detail"]


def test_health_names_the_model_and_the_limits_and_readyz_says_the_same():
    with client(Settings(engine="onnx", max_upload_mb=2.5, max_files=3)) as service:
        health, readyz = service.get("/").json(), service.get("/readyz").json()
    assert health == readyz
    assert health == {
        "status": "ok",
        "app_version": __version__,
        "backbone": CARD["backbone"],
        "engine": "onnx",
        "model_version": CARD["model_version"],
        "model_built_at": CARD["built_at"],
        "model_file": CARD["files"]["onnx"]["file"],
        "model_sha256": CARD["files"]["onnx"]["sha256"],
        "input_size": [32, 24],  # the stub's
        "class_names": CARD["class_names"],
        "neither_threshold": CARD["neither"]["threshold"],
        "max_upload_mb": 2.5,
        "max_files": 3,
    }


def test_card_is_the_model_card_and_metrics_are_prometheus_text():
    with client() as service:
        assert service.get("/card").json() == CARD
        metrics = service.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert f'app_version="{__version__}"' in metrics.text
