"""Decoding a request's images and predicting (muffin_v_chihuahua/service/inference.py), with a stub classifier:
one batch for all, every bad image named in order, the bytes dropped once decoded, the model's time reported."""

from __future__ import annotations

import pytest

from muffin_v_chihuahua.service.bodies import Upload
from muffin_v_chihuahua.service.inference import Undecodable, classify
from tests.stub_classifier import CHIHUAHUA, HEATMAP, MUFFIN, StubClassifier


def test_one_batch_for_all_the_images_their_bytes_dropped_the_time_reported():
    stub, seconds = StubClassifier(), []
    uploads = [Upload("m", "image/png", MUFFIN), Upload("c", "", bytearray(CHIHUAHUA))]
    predictions = classify(stub, uploads, seconds.append, heatmap=True)
    assert [p.verdict for p in predictions] == ["muffin", "chihuahua"] and predictions[0].heatmap == HEATMAP
    assert stub.batches == [2] and len(seconds) == 1 and seconds[0] >= 0
    assert [upload.data for upload in uploads] == [b"", b""]


def test_every_undecodable_image_is_named_in_order_and_the_model_is_not_run():
    stub, seconds = StubClassifier(), []
    uploads = [Upload("empty.png", "", b""), Upload("good.png", "", MUFFIN), Upload("text.png", "", b"hello")]
    with pytest.raises(Undecodable) as undecodable:
        classify(stub, uploads, seconds.append)
    assert [(name, error.kind) for name, error in undecodable.value.errors] == [
        ("empty.png", "empty"),
        ("text.png", "not-an-image"),
    ]
    assert str(undecodable.value).startswith("empty.png: ") and "; text.png: " in str(undecodable.value)
    assert stub.batches == [] and seconds == []
