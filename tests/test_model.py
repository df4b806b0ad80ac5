"""builders.model: the logistic head learns, evaluation is repeatable, and the saved model is what its card says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from builders import model as builder
from builders.data import sha256_of
from muffin_v_chihuahua import images
from tests.conftest import PACKAGE

MODEL_DIR = PACKAGE / "model"


def separable(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clouds 6 standard deviations apart along one fixed direction, in 8 dimensions."""
    direction = np.random.default_rng(99).normal(size=8)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    features = rng.normal(size=(n, 8)) + np.outer(labels - 0.5, 6 * direction / np.linalg.norm(direction)) + 10
    return features, labels


def test_fit_logistic_separates_a_separable_problem():
    features, labels = separable()
    weights, bias = builder.fit_logistic(features, labels)
    assert (builder.predict_logistic(features, weights, bias) == labels).all()
    unseen_features, unseen_labels = separable(seed=1)
    assert (builder.predict_logistic(unseen_features, weights, bias) == unseen_labels).mean() >= 0.98


def test_cross_validate_is_deterministic_and_honest():
    features, labels = separable()
    assert builder.cross_validate(features, labels) == builder.cross_validate(features, labels) >= 0.98
    noise = np.random.default_rng(3).normal(size=features.shape)
    assert builder.cross_validate(noise, labels) == builder.cross_validate(noise, labels) < 0.75


def test_assemble_turns_the_logistic_head_into_a_two_class_softmax():
    inputs = keras.Input((4,))
    features = keras.layers.Dense(3, name="features")(inputs)
    imagenet = keras.layers.Dense(5, activation="softmax", name="imagenet")(inputs)
    base = keras.Model(inputs, [features, imagenet])
    weights, bias = np.array([0.5, -1.0, 2.0]), 0.25

    imagenet_out, verdict = builder.assemble(base, weights, bias).predict(np.eye(4), verbose=0)

    base_features, base_imagenet = base.predict(np.eye(4), verbose=0)
    np.testing.assert_allclose(imagenet_out, base_imagenet, atol=1e-6, strict=False)
    logistic = 1 / (1 + np.exp(-(base_features @ weights + bias)))
    np.testing.assert_allclose(verdict, np.stack([1 - logistic, logistic], axis=1), atol=1e-6, strict=False)


# ---------------------------------------------------------------------------
# The built model (muffin_v_chihuahua/model) and its card.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((MODEL_DIR / builder.CARD_FILE).read_text())


def test_card_describes_the_saved_model(card):
    assert card["files"]["keras"]["file"] == builder.MODEL_FILE
    for model_file in card["files"].values():
        path = MODEL_DIR / model_file["file"]
        assert sha256_of(path) == model_file["sha256"], path
        assert path.stat().st_size == model_file["bytes"], path
    assert card["evaluation"]["accuracy"] >= 0.95
    assert card["evaluation"]["photos"] == card["dataset"]["photos"] == 120
    assert card["class_names"] == ["chihuahua", "muffin"]
    assert len(json.loads((MODEL_DIR / card["imagenet_class_names"]).read_text())) == 1000


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import keras, numpy as np
    model = keras.models.load_model(sys.argv[1], compile=False)
    imagenet, verdict = model.predict(np.load(sys.argv[2]), verbose=0)
    np.savez(sys.argv[3], imagenet=imagenet, verdict=verdict)
    """
)


def test_saved_model_predicts_the_same_in_a_fresh_process(card, dataset_dir, tmp_path):
    names = ["chihuahua/1.jpg", "chihuahua/2.jpg", "muffin/100.jpg", "muffin/102.jpg"]
    batch = np.stack([images.decode((dataset_dir / name).read_bytes(), tuple(card["input_size"])) for name in names])
    np.save(tmp_path / "batch.npy", batch)
    path = MODEL_DIR / card["files"]["keras"]["file"]

    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(path), str(tmp_path / "batch.npy"), str(tmp_path / "out.npz")],
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    fresh = np.load(tmp_path / "out.npz")
    imagenet, verdict = keras.models.load_model(path, compile=False).predict(batch, verbose=0)

    assert imagenet.shape == (4, 1000) and verdict.shape == (4, 2)
    for outputs in (imagenet, verdict):
        np.testing.assert_allclose(outputs.sum(axis=1), np.ones(len(outputs)), atol=1e-5, strict=False)
    np.testing.assert_allclose(fresh["imagenet"], imagenet, atol=1e-5, strict=False)
    np.testing.assert_allclose(fresh["verdict"], verdict, atol=1e-5, strict=False)
    assert verdict.argmax(axis=1).tolist() == [0, 0, 1, 1]  # chihuahua, chihuahua, muffin, muffin
