"""The Open Inference Protocol (KServe v2) routes of the service, started for real and asked by Triton's own HTTP
client (tritonclient[http], in a venv of its own: tests/triton_client.py) and by hand-made requests.

End to end: readiness, server and model metadata, verdicts for real photos (muffins, chihuahuas and a cat that
is neither) equal to the embedded model's, outputs binary and JSON, the outputs a request names, base64 JSON
input, binary tensor data by hand, and errors that need the app (the decoder, the limits). On the onnx engine: the
codecs do not depend on the engine (test_service.py runs /predict on both). The codec's every rule is tested on
bytes (test_service_inference_protocol_codec.py), the routes before the model is loaded in process
(test_service_inference_protocol.py).
"""

from __future__ import annotations

import http.client
import json
import math
import struct
import subprocess
from pathlib import Path

import pytest
import requests

from muffin_v_chihuahua import images
from tests.servers import CARD, PACKAGE, ServiceProcess, get, image_input

pytestmark = pytest.mark.service

MODEL_URL = "/v2/models/muffin-v-chihuahua"
OUTPUTS = ["verdict", "probability", "evidence", "imagenet_labels", "imagenet_probabilities", "reason"]
CLIENT_SCRIPT = Path(__file__).with_name("triton_client.py")


def photos(label: str, count: int) -> list[Path]:
    return sorted((PACKAGE / "data" / label).glob("*.jpg"))[:count]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    log = tmp_path_factory.mktemp("service-v2") / "service.log"
    with ServiceProcess("onnx", log=log) as running:
        yield running


@pytest.fixture(scope="module")
def onnx_classifier():
    from muffin_v_chihuahua.classifier import Classifier

    return Classifier(engine="onnx")


@pytest.fixture(scope="module")
def cat() -> bytes:
    from builders.neither import negative_photos

    return negative_photos()["cat"]


@pytest.fixture(scope="module")
def sent(tmp_path_factory, cat) -> list[Path]:
    """The photos the client sends: three muffins, three chihuahuas and a cat (neither)."""
    cat_file = tmp_path_factory.mktemp("photos") / "cat.png"
    cat_file.write_bytes(cat)
    return [*photos("muffin", 3), *photos("chihuahua", 3), cat_file]


@pytest.fixture(scope="module")
def seen(client_venv, service, sent) -> dict:
    """What Triton's client saw (tests/triton_client.py, run in its own venv)."""
    result = subprocess.run(
        [client_venv / "bin" / "python", CLIENT_SCRIPT, service.url, *sent], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{result.stderr}\n{service.log()}"
    return json.loads(result.stdout)


def expected(classifier, data: list[bytes]):
    return classifier.predict([images.decode(item, classifier.input_size) for item in data])


def assert_same(answers: list[dict], predictions) -> None:
    """The protocol's answers are the embedded model's predictions, image by image."""
    assert [a["verdict"] for a in answers] == [p.verdict for p in predictions]
    for answer, own in zip(answers, predictions, strict=True):
        if own.probability is None:
            assert answer["probability"] is None  # NaN in the tensor
        else:
            assert answer["probability"] == pytest.approx(own.probability, abs=1e-5)
        assert answer["evidence"] == pytest.approx(own.evidence, abs=1e-5)
        assert answer["imagenet_labels"] == [label.name for label in own.imagenet]
        assert answer["imagenet_probabilities"] == pytest.approx(
            [label.probability for label in own.imagenet], abs=1e-5
        )
        assert answer["reason"] == (own.reason or "")


# ----- readiness and metadata --------------------------------------------------------------------------


def test_live_and_ready_once_loaded(service):
    assert get(service.url + "/v2/health/live") == (200, {"live": True})
    assert get(service.url + "/v2/health/ready") == (200, {"ready": True})
    assert get(service.url + MODEL_URL + "/ready") == (200, {"name": "muffin-v-chihuahua", "ready": True})


def test_the_client_sees_a_live_ready_server_and_the_model_s_metadata(seen):
    assert (seen["live"], seen["ready"], seen["model_ready"]) == (True, True, True)
    assert seen["server_metadata"]["name"] == "muffin-v-chihuahua"
    assert "binary_tensor_data" in seen["server_metadata"]["extensions"]
    metadata = seen["model_metadata"]
    assert metadata["name"] == "muffin-v-chihuahua" and metadata["versions"] == [CARD["model_version"]]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    outputs = {output["name"]: (output["datatype"], output["shape"]) for output in metadata["outputs"]}
    assert outputs == {
        "verdict": ("BYTES", [-1]),
        "probability": ("FP32", [-1]),
        "evidence": ("FP32", [-1]),
        "imagenet_labels": ("BYTES", [-1, 3]),
        "imagenet_probabilities": ("FP32", [-1, 3]),
        "reason": ("BYTES", [-1]),
    }
    assert "NaN" in metadata["parameters"]["outputs"]["probability"]
    assert seen["unknown_model"]["status"] == "404"


# ----- inference through Triton's client -----------------------------------------------------------------


def test_binary_outputs_are_the_embedded_model_s_predictions(seen, sent, onnx_classifier):
    assert seen["binary"]["names"] == OUTPUTS and all(seen["binary"]["binary"].values())
    answers = seen["binary"]["answers"]
    assert [a["verdict"] for a in answers] == ["muffin"] * 3 + ["chihuahua"] * 3 + ["neither"]
    assert answers[0]["probability_dtype"] == "float32"
    assert_same(answers, expected(onnx_classifier, [path.read_bytes() for path in sent]))


def test_json_outputs_say_the_same(seen, sent, onnx_classifier):
    assert seen["json"]["names"] == OUTPUTS and not any(seen["json"]["binary"].values())
    assert_same(seen["json"]["answers"], expected(onnx_classifier, [path.read_bytes() for path in sent]))


def test_only_the_outputs_asked_for_each_binary_or_not_as_asked(seen):
    assert seen["some"]["names"] == ["verdict", "probability"]
    assert seen["some"]["binary"] == {"verdict": True, "probability": False}
    assert [a["verdict"] for a in seen["some"]["answers"]] == ["muffin", "muffin"]


def test_an_undecodable_image_is_a_400_naming_the_element(seen):
    assert seen["bad_image"]["status"] == "400"
    assert seen["bad_image"]["message"].startswith("image[1]: ") and "not an image" in seen["bad_image"]["message"]


# ----- hand-made requests ------------------------------------------------------------------------------


def infer(service, body: dict | bytes, headers: dict | None = None) -> requests.Response:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    return requests.post(service.url + MODEL_URL + "/infer", data=data, headers=headers, timeout=120)


@pytest.mark.parametrize("parameters", [{}, {"content_type": "base64"}], ids=["plain", "content-type-base64"])
def test_base64_json_in_json_out(service, onnx_classifier, cat, parameters):
    data = [photos("chihuahua", 1)[0].read_bytes(), cat]
    response = infer(service, {"id": "two", "inputs": [image_input(data, **parameters)]})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == "two" and body["model_name"] == "muffin-v-chihuahua"
    tensors = {output["name"]: output for output in body["outputs"]}
    assert list(tensors) == OUTPUTS
    assert tensors["imagenet_labels"]["shape"] == [2, 3] and tensors["probability"]["datatype"] == "FP32"
    answers = [
        {
            name: tensors[name]["data"][index * 3 : index * 3 + 3]
            if name.startswith("imagenet")
            else tensors[name]["data"][index]
            for name in OUTPUTS
        }
        for index in range(2)
    ]
    assert_same(answers, expected(onnx_classifier, data))
    assert tensors["probability"]["data"][1] is None  # the cat is neither: NaN, which JSON writes as null


def test_binary_tensor_data_by_hand(service):
    data = [photos("muffin", 1)[0].read_bytes()]
    raw = b"".join(struct.pack("<I", len(item)) + item for item in data)
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}}
            ],
            "outputs": [{"name": "verdict", "parameters": {"binary_data": True}}, {"name": "imagenet_probabilities"}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    response = infer(service, header + raw, {"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    head, tail = json.loads(response.content[:length]), response.content[length:]
    verdict, probabilities = head["outputs"]
    assert verdict["parameters"]["binary_data_size"] == 4 + len("muffin")
    assert tail[: 4 + 6] == struct.pack("<I", 6) + b"muffin"
    assert probabilities["shape"] == [1, 3] and probabilities["parameters"]["binary_data_size"] == 12
    values = struct.unpack("<3f", tail[10:])
    assert values == tuple(sorted(values, reverse=True)) and not any(math.isnan(v) for v in values)


def binary(size: int, raw: bytes) -> tuple[bytes, dict]:
    """A binary tensor data request: a JSON header saying `size` bytes of image data, then `raw`."""
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": size}}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


# Through the app: the codec's every rule is tested on bytes (test_service_inference_protocol_codec.py).
BAD_REQUESTS = {
    "not-json": (b"{not json", {}, 400, "not valid json"),
    "undecodable": (
        {"inputs": [image_input([b"", b"GIF89a broken"])]},
        {},
        400,
        "image[0]: the file is empty; image[1]:",
    ),
    "too-many-images": ({"inputs": [image_input([b"x"] * 17)]}, {}, 413, "at most 16"),
    # The element's length says 11 MB: refused from it, before its bytes.
    "image-over-the-limit": (
        *binary(8, struct.pack("<I", 11 * 1024 * 1024) + b"\xff\xd8\xff\xe0"),
        413,
        "image[0]: the image of 11,534,336 bytes",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_is_an_error_that_says_what_is_wrong(service, case):
    body, headers, status, words = BAD_REQUESTS[case]
    response = infer(service, body, headers)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["error"].lower(), response.json()


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(service):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        connection.putrequest("POST", MODEL_URL + "/infer")
        connection.putheader("Content-Length", str(10**10))
        connection.endheaders(b"{}")
        response = connection.getresponse()
        assert response.status == 413 and "larger than the limit" in json.loads(response.read())["error"]
    finally:
        connection.close()


def test_another_model_or_version_is_a_404(service):
    status, body = get(service.url + "/v2/models/resnet50")
    assert status == 404 and "muffin-v-chihuahua" in body["error"]
    status, body = get(service.url + MODEL_URL + "/versions/9.9/ready")
    assert status == 404 and "9.9" in body["error"]
    assert get(service.url + MODEL_URL + f"/versions/{CARD['model_version']}/ready")[0] == 200
