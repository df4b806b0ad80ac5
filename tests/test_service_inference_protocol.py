"""The Open Inference Protocol's routes (muffin_v_chihuahua/service/inference_protocol.py) in process, around a
stub classifier: readiness and errors in the protocol's shape before the model is loaded and when it failed,
another model or version, metadata, and an inference in JSON and binary. End to end, with Triton's own client and
the real model: test_inference_protocol.py."""

from __future__ import annotations

import json
import struct

from muffin_v_chihuahua.classifier import ModelFilesError
from muffin_v_chihuahua.service.settings import Settings
from tests.servers import CARD, PACKAGE, image_input
from tests.stub_classifier import CHIHUAHUA, GREY, MUFFIN, client, gate

MODEL_URL = "/v2/models/muffin-v-chihuahua"


def test_while_the_model_loads_live_but_not_ready_in_the_protocol_s_shape():
    held_back = gate()
    with client(load_model=held_back) as service:
        assert service.get("/v2/health/live").json() == {"live": True}
        assert service.get("/v2").status_code == 200
        for path in ("/v2/health/ready", MODEL_URL, MODEL_URL + "/ready"):
            answer = service.get(path)
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "1", path
            assert "loading" in answer.json()["error"], answer.json()
        infer = service.post(MODEL_URL + "/infer", json={"inputs": [image_input([MUFFIN])]})
        assert infer.status_code == 503 and "loading" in infer.json()["error"]
        # Another model is not this one's, loaded or not.
        assert service.get("/v2/models/resnet50").status_code == 404
        held_back.open()
        service.app.state.model.done.wait()
        assert service.get("/v2/health/ready").json() == {"ready": True}
        assert service.get(MODEL_URL + "/ready").json() == {"name": "muffin-v-chihuahua", "ready": True}


def test_a_model_that_failed_to_load_is_not_ready_and_says_why():
    failing = gate(ModelFilesError(PACKAGE / "model" / "card.json", "is damaged"))
    failing.open()
    with client(load_model=failing) as service:
        service.app.state.model.done.wait()
        answer = service.get("/v2/health/ready")
    assert answer.status_code == 503 and "Retry-After" not in answer.headers
    assert "could not be loaded: ModelFilesError" in answer.json()["error"] and "damaged" in answer.json()["error"]


def test_another_model_or_version_is_a_404():
    with client() as service:
        answer = service.get("/v2/models/resnet50")
        assert answer.status_code == 404 and "muffin-v-chihuahua" in answer.json()["error"]
        answer = service.get(MODEL_URL + "/versions/9.9/ready")
        assert answer.status_code == 404 and "9.9" in answer.json()["error"]
        assert service.get(MODEL_URL + f"/versions/{CARD['model_version']}/ready").status_code == 200


def test_model_metadata_names_the_tensors_and_the_limits():
    with client() as service:
        metadata = service.get(MODEL_URL).json()
    assert metadata["name"] == "muffin-v-chihuahua" and metadata["versions"] == [CARD["model_version"]]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["parameters"]["class_names"] == CARD["class_names"]
    assert (metadata["parameters"]["max_batch_size"], metadata["parameters"]["max_image_bytes"]) == (16, 10 * 2**20)


def test_an_inference_in_json_gives_the_stub_s_verdicts_and_counts_them():
    with client() as service:
        answer = service.post(
            MODEL_URL + "/infer", json={"id": "x", "inputs": [image_input([MUFFIN, GREY, CHIHUAHUA])]}
        )
        metrics = service.get("/metrics").text
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["model_name"], body["model_version"]) == ("x", "muffin-v-chihuahua", CARD["model_version"])
    tensors = {output["name"]: output["data"] for output in body["outputs"]}
    assert tensors["verdict"] == ["muffin", "neither", "chihuahua"]
    assert tensors["probability"] == [0.75, None, 0.75]
    assert 'muffin_v_chihuahua_verdicts_total{verdict="neither"} 1.0' in metrics


def test_an_inference_in_binary_answers_in_binary():
    raw = struct.pack("<I", len(MUFFIN)) + MUFFIN
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [tensor], "outputs": [{"name": "verdict", "parameters": {"binary_data": True}}]})
    with client() as service:
        answer = service.post(
            MODEL_URL + "/infer",
            content=header.encode() + raw,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers["Inference-Header-Content-Length"])
    assert answer.content[length:] == struct.pack("<I", 6) + b"muffin"


def test_a_refusal_and_an_undecodable_image_are_the_protocol_s_errors():
    with client() as service:
        refused = service.post(MODEL_URL + "/infer", content=b"[]")
        undecodable = service.post(MODEL_URL + "/infer", json={"inputs": [image_input([MUFFIN, b"not an image"])]})
    small = Settings(engine="onnx", max_upload_mb=0.01, max_files=1)  # a body over about 78 KB is too large
    with client(small) as service:
        too_large = service.post(MODEL_URL + "/infer", content=bytes(100 * 1024))
    assert refused.status_code == 400 and "json object" in refused.json()["error"].lower()
    assert undecodable.status_code == 400 and undecodable.json()["error"].startswith("image[1]: ")
    assert too_large.status_code == 413 and "larger than the limit" in too_large.json()["error"]
