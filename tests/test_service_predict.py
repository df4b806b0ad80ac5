"""POST /predict (muffin_v_chihuahua/service/predict.py) in process, around a stub classifier: multipart files and a
raw body, the heatmap on request, and every refusal a JSON body naming the file (413, 415, 422). End to end, with
the real model and the whole corpus: test_service.py."""

from __future__ import annotations

import pytest

from muffin_v_chihuahua.service.settings import Settings
from tests.servers import CARD
from tests.stub_classifier import CHIHUAHUA, GREY, HEATMAP, MUFFIN, client, photo


def files(*named: tuple[str, bytes], kind: str | None = "image/png") -> list:
    return [("files", (name, data, kind)) for name, data in named]


def assert_problem(answer, status: int, words: str, file: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert words in body["detail"] and body["errors"], body
    if file is not None:
        assert file in [error["file"] for error in body["errors"]] and file in body["detail"], body


def test_multipart_files_get_a_verdict_each_in_order():
    with client() as service:
        answer = service.post("/predict", files=files(("m.png", MUFFIN), ("g.png", GREY), ("c.png", CHIHUAHUA)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["engine"], body["model_sha256"]) == ("onnx", CARD["files"]["onnx"]["sha256"])
    assert [(p["file"], p["verdict"], p["probability"]) for p in body["predictions"]] == [
        ("m.png", "muffin", 0.75),
        ("g.png", "neither", None),
        ("c.png", "chihuahua", 0.75),
    ]
    assert body["predictions"][1]["reason"] == "it looks more like a bagel"
    assert all("heatmap" not in p for p in body["predictions"])


def test_a_raw_body_is_one_image_named_by_filename_with_its_heatmap_when_asked():
    with client() as service:
        answer = service.post(
            "/predict?filename=dog.jpg&heatmap=true",
            content=photo((0, 255, 0), "JPEG"),
            headers={"Content-Type": "image/jpeg"},
        )
    [prediction] = answer.json()["predictions"]
    assert (prediction["file"], prediction["verdict"]) == ("dog.jpg", "chihuahua")
    assert prediction["heatmap"] == [list(row) for row in HEATMAP] and prediction["heatmap_class"] == "chihuahua"


@pytest.mark.parametrize(
    ("content", "kind", "status", "words"),
    [
        (b"hello", "text/plain", 415, "text/plain is not accepted"),
        (b"", "", 415, "no content type is not accepted"),
        (b"<svg/>", "image/svg+xml", 415, "image/svg+xml is not an accepted image type"),
        (b"hello", "image/png", 415, "not an image"),
        (b"", "image/png", 422, "empty"),
        (MUFFIN[:100], "image/png", 422, "bad.png"),
    ],
    ids=["text", "no-type", "svg", "not-an-image", "empty", "truncated"],
)
def test_a_raw_body_that_is_not_a_usable_image_is_refused_naming_it(content, kind, status, words):
    with client() as service:
        answer = service.post("/predict?filename=bad.png", content=content, headers={"Content-Type": kind})
    assert_problem(answer, status, words, file="bad.png")


def test_a_bad_file_beside_a_good_one_is_named_alone():
    with client() as service:
        answer = service.post("/predict", files=files(("good.png", MUFFIN), ("bad.png", b"hello")))
    assert_problem(answer, 415, "not an image", file="bad.png")
    assert "good.png" not in answer.json()["detail"]


def test_images_over_the_limits_are_refused_413():
    small = Settings(engine="onnx", max_upload_mb=0.005, max_files=2)
    large = photo((200, 80, 40), "BMP")  # 9 KB, over 0.005 MB (5,242 bytes)
    with client(small) as service:
        raw = service.post("/predict?filename=big.bmp", content=large, headers={"Content-Type": "image/bmp"})
        part = service.post("/predict", files=files(("big.bmp", large)))
        many = service.post("/predict", files=files(*[(f"{n}.png", GREY) for n in range(3)]))
    assert_problem(raw, 413, "larger than the limit of 0.005 MB", file="big.bmp")
    assert_problem(part, 413, "larger than the limit of 0.005 MB", file="big.bmp")
    assert_problem(many, 413, "at most 2 per request")
