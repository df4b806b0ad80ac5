"""builders.backbones: the Lite0 port classifies like ImageNet; InceptionV3 weights are fetched, pinned and chosen."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from builders import backbones
from builders.backbones import INCEPTION_V3_FILE, BackboneUnavailable
from builders.data import sha256_of
from muffin_v_chihuahua import images
from tests.servers import closed_url, serving_folder

CHIHUAHUA = 151  # ImageNet class index


def test_lite0_port_recognises_the_chihuahuas(dataset_dir):
    model = backbones.efficientnet_lite0()
    photos = sorted((dataset_dir / "chihuahua").glob("*.jpg"))
    assert len(photos) == 65
    batch = np.stack([images.decode(path.read_bytes(), (224, 224)) for path in photos])

    features, probabilities, feature_map, logits = model.predict(batch, batch_size=33, verbose=0)

    assert features.shape == (65, 1280) and probabilities.shape == (65, 1000) and feature_map.shape == (65, 7, 7, 1280)
    np.testing.assert_allclose(feature_map.mean(axis=(1, 2)), features, atol=1e-4, strict=False)  # what is pooled
    np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(len(photos)), atol=1e-4, strict=False)
    weights, bias = backbones.imagenet_classifier(model)  # the logits are ImageNet's layer on the pooled features
    np.testing.assert_allclose(logits, features @ weights + bias, atol=1e-3, strict=False)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), probabilities, atol=1e-5, strict=False)
    # 59 of 65 measured; a wrong transpose, epsilon or normalisation drops this to near 0.
    assert (probabilities.argmax(axis=1) == CHIHUAHUA).sum() >= 55


# ---------------------------------------------------------------------------
# InceptionV3, with a locally made (randomly initialised) weights file served from 127.0.0.1.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    """Keras' InceptionV3 with random weights, saved under the official file name (~95 MB)."""
    path = tmp_path_factory.mktemp("www") / INCEPTION_V3_FILE
    keras.applications.InceptionV3(weights=None).save(path)
    return path


@pytest.fixture(scope="module")
def origin(inception_file) -> Iterator[str]:
    """URL of inception_file on a local HTTP server, for the module's lifetime."""
    with serving_folder(inception_file.parent) as base:
        yield f"{base}/{INCEPTION_V3_FILE}"


@pytest.fixture
def closed_origin() -> str:
    """A URL on a local port nothing listens on."""
    return f"{closed_url()}/{INCEPTION_V3_FILE}"


def test_weights_are_downloaded_into_the_cache_and_then_used_offline(tmp_path, inception_file, origin, closed_origin):
    sha256 = sha256_of(inception_file)

    path = backbones.inception_v3_weights(origin=origin, sha256=sha256, cache_dir=tmp_path)

    assert path == tmp_path / "models" / INCEPTION_V3_FILE
    assert sha256_of(path) == sha256
    # Once cached, no network is needed.
    assert backbones.inception_v3_weights(origin=closed_origin, sha256=sha256, cache_dir=tmp_path) == path


def test_a_download_with_the_wrong_sha256_is_refused_and_not_kept(tmp_path, origin):
    with pytest.raises(BackboneUnavailable, match="refused"):
        backbones.inception_v3_weights(origin=origin, sha256="0" * 64, cache_dir=tmp_path)
    assert not any((tmp_path / "models").glob("*"))


def test_an_unreachable_origin_is_refused_and_says_how_to_fix_it(tmp_path, closed_origin):
    with pytest.raises(BackboneUnavailable) as raised:
        backbones.inception_v3_weights(origin=closed_origin, cache_dir=tmp_path)
    message = str(raised.value)
    assert "efficientnet-lite0" in message
    assert str(tmp_path / "models" / INCEPTION_V3_FILE) in message
    assert not any((tmp_path / "models").glob("*"))


def test_inception_v3_loads_the_file_and_gives_features_and_imagenet(inception_file):
    model = backbones.inception_v3(inception_file)

    assert [tuple(output.shape) for output in model.outputs] == [
        (None, 2048),
        (None, 1000),
        (None, 8, 8, 2048),
        (None, 1000),
    ]
    assert model.input_shape == (None, 299, 299, 3)
    saved = keras.models.load_model(inception_file, compile=False).get_layer("predictions").get_weights()
    for loaded, expected in zip(model.get_layer("predictions").get_weights(), saved, strict=True):
        np.testing.assert_array_equal(loaded, expected, strict=False)


# ---------------------------------------------------------------------------
# choose("auto")
# ---------------------------------------------------------------------------


def test_auto_falls_back_to_lite0_when_inception_is_neither_cached_nor_reachable(tmp_path, monkeypatch, closed_origin):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "INCEPTION_V3_ORIGIN", closed_origin)

    name, reason = backbones.choose("auto")

    assert name == "efficientnet-lite0"
    assert "cannot be downloaded" in reason


def test_auto_picks_inception_when_reachable(tmp_path, monkeypatch, origin):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "INCEPTION_V3_ORIGIN", origin)
    assert backbones.choose("auto") == ("inception-v3", f"its weights can be downloaded from {origin}")


def test_auto_picks_inception_when_the_pinned_file_is_cached(tmp_path, monkeypatch, inception_file, closed_origin):
    (tmp_path / "models").mkdir()
    shutil.copyfile(inception_file, tmp_path / "models" / INCEPTION_V3_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "INCEPTION_V3_ORIGIN", closed_origin)

    # A cached file with another hash than the pin is not trusted...
    assert backbones.choose("auto")[0] == "efficientnet-lite0"
    # ...one with the pinned hash is used, without any network.
    monkeypatch.setattr(backbones, "INCEPTION_V3_SHA256", sha256_of(inception_file))
    name, reason = backbones.choose("auto")
    assert name == "inception-v3"
    assert "cache" in reason


def test_a_named_backbone_is_taken_as_chosen():
    assert backbones.choose("efficientnet-lite0") == ("efficientnet-lite0", "chosen")
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.build("resnet")
