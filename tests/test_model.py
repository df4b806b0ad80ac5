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
from muffin_v_chihuahua.card import ModelCard, ModelFile
from tests.conftest import PACKAGE

MODEL_DIR = PACKAGE / "model"


def separable(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clouds 6 standard deviations apart along one fixed direction, in 8 dimensions."""
    direction = np.random.default_rng(99).normal(size=8)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    features = rng.normal(size=(n, 8)) + np.outer(labels - 0.5, 6 * direction / np.linalg.norm(direction)) + 10
    return features, labels


def decide(features: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """The folded head's verdict: 1 (muffin) when its logit is positive, as the Dense softmax decides."""
    return (features @ weights + bias > 0).astype(int)


def test_head_learns_a_separable_problem():
    features, labels = separable()
    weights, bias = builder.fold_scaler(builder.make_head().fit(features, labels))
    assert (decide(features, weights, bias) == labels).all()
    unseen_features, unseen_labels = separable(seed=1)
    assert (decide(unseen_features, weights, bias) == unseen_labels).mean() >= 0.98


def test_folded_scaler_gives_the_pipelines_decision_function():
    features, labels = separable()
    features = features * np.geomspace(0.01, 100, features.shape[1])  # unequal scales, so the folding matters
    head = builder.make_head().fit(features, labels)
    weights, bias = builder.fold_scaler(head)
    unseen_features = separable(seed=1)[0] * np.geomspace(0.01, 100, features.shape[1])
    np.testing.assert_allclose(
        unseen_features @ weights + bias, head.decision_function(unseen_features), rtol=1e-9, atol=1e-9, strict=False
    )


def test_cross_validation_is_deterministic_and_learns_a_separable_problem():
    features, labels = separable()
    names = [f"photo{i}.jpg" for i in range(len(labels))]
    evaluation = builder.evaluate(features, labels, names)
    assert evaluation == builder.evaluate(features, labels, names)
    assert evaluation["accuracy"] >= 0.98 and evaluation["photos"] == 200 and evaluation["folds"] == builder.FOLDS


def test_cross_validation_is_honest_noise_is_at_chance():
    # More features than photos, as in the real head: fitted on all of them, the head is perfect on its own photos...
    noise, labels = np.random.default_rng(3).normal(size=(120, 1280)), np.arange(120) % 2
    names = [f"photo{i}.jpg" for i in range(len(labels))]
    weights, bias = builder.fold_scaler(builder.make_head().fit(noise, labels))
    assert (decide(noise, weights, bias) == labels).all()
    # ...but on the photos each fold did not see it is no better than a coin toss, and every mistake is named.
    evaluation = builder.evaluate(noise, labels, names)
    assert evaluation["accuracy"] < 0.75 and evaluation["log_loss"] > np.log(2)
    assert len(evaluation["misclassified"]) == round((1 - evaluation["accuracy"]) * len(labels))
    assert set(evaluation["misclassified"]) <= set(names)


def test_assemble_turns_the_logistic_head_into_a_two_class_softmax_and_its_activation_maps():
    """A toy backbone: a 2x3 map of 3 features, averaged; each class's map averages to its logit minus its bias."""
    inputs = keras.Input((2, 3, 4))
    feature_map = keras.layers.Dense(3, name="feature_map")(inputs)
    features = keras.layers.GlobalAveragePooling2D(name="features")(feature_map)
    logits = keras.layers.Dense(5, name="logits")(keras.layers.Flatten()(inputs))
    imagenet = keras.layers.Activation("softmax", name="imagenet")(logits)
    base = keras.Model(inputs, [features, imagenet, feature_map, logits])
    weights, bias = np.array([0.5, -1.0, 2.0]), 0.25
    batch = np.random.default_rng(0).normal(size=(4, 2, 3, 4))

    imagenet_out, verdict, heatmap, logits_out, features_out = builder.assemble(base, weights, bias).predict(
        batch, verbose=0
    )

    base_features, base_imagenet, base_map, base_logits = base.predict(batch, verbose=0)
    np.testing.assert_allclose(imagenet_out, base_imagenet, atol=1e-6, strict=False)
    # The "neither" rule's inputs, passed through as they are.
    np.testing.assert_allclose(logits_out, base_logits, atol=1e-6, strict=False)
    np.testing.assert_allclose(features_out, base_features, atol=1e-6, strict=False)
    logit = base_features @ weights + bias
    logistic = 1 / (1 + np.exp(-logit))
    np.testing.assert_allclose(verdict, np.stack([1 - logistic, logistic], axis=1), atol=1e-6, strict=False)
    assert heatmap.shape == (4, 2, 3, 2)
    np.testing.assert_allclose(heatmap[..., 1], base_map @ weights / 2, atol=1e-5, strict=False)  # muffin: +z/2
    np.testing.assert_allclose(
        heatmap.mean(axis=(1, 2)), np.stack([-logit, logit], 1) / 2 - [-bias / 2, bias / 2], atol=1e-5, strict=False
    )


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
    evaluation = card["evaluation"]  # cross-validated: from photos the head did not see in that fold
    assert evaluation["photos"] == card["dataset"]["photos"] == 120 and evaluation["folds"] == builder.FOLDS
    assert evaluation["accuracy"] >= 0.95
    assert list(evaluation["recall"]) == card["class_names"] and min(evaluation["recall"].values()) >= 0.9
    assert evaluation["log_loss"] < 0.2  # confident as well as right; a coin toss scores log 2 = 0.69
    assert len(evaluation["misclassified"]) == round((1 - evaluation["accuracy"]) * evaluation["photos"])
    assert card["class_names"] == ["chihuahua", "muffin"]
    assert card["outputs"] == ["imagenet", "verdict", "heatmap", "imagenet_logits", "features"]
    assert card["heatmap"]["shape"][2:] == [2]
    agreement = card["agreement"]  # the build's own check of the .onnx against the .h5, every output
    assert agreement["same_verdicts"] and agreement["max_probability_difference"] < agreement["tolerance"]
    assert agreement["max_heatmap_difference"] < agreement["heatmap_tolerance"]
    assert len(json.loads((MODEL_DIR / card["imagenet_class_names"]).read_text())) == 1000


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import keras, numpy as np
    model = keras.models.load_model(sys.argv[1], compile=False)
    imagenet, verdict, heatmap, logits, features = model.predict(np.load(sys.argv[2]), verbose=0)
    np.savez(sys.argv[3], imagenet=imagenet, verdict=verdict, heatmap=heatmap, logits=logits, features=features)
    """
)


def test_card_states_the_models_own_version_and_the_sha256_of_the_class_names(card):
    names_file = MODEL_DIR / card["imagenet_class_names"]
    assert card["imagenet_class_names_sha256"] == sha256_of(names_file)
    typed = ModelCard.from_dict(card, MODEL_DIR / "card.json")
    version = builder.model_version(typed.files, typed.imagenet_class_names_sha256, typed.built_at)
    assert card["model_version"] == version != card["version"]
    assert card["model_version"].startswith(card["built_at"][:10].replace("-", ".") + "+")
    changed = {**typed.files, "onnx": ModelFile(typed.files["onnx"].file, "0" * 64, typed.files["onnx"].bytes)}
    assert builder.model_version(changed, typed.imagenet_class_names_sha256, typed.built_at) != version  # another file


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
    imagenet, verdict, heatmap, logits, features = keras.models.load_model(path, compile=False).predict(
        batch, verbose=0
    )

    assert imagenet.shape == (4, 1000) and verdict.shape == (4, 2) and heatmap.shape == (4, *card["heatmap"]["shape"])
    for outputs in (imagenet, verdict):
        np.testing.assert_allclose(outputs.sum(axis=1), np.ones(len(outputs)), atol=1e-5, strict=False)
    np.testing.assert_allclose(fresh["imagenet"], imagenet, atol=1e-5, strict=False)
    np.testing.assert_allclose(fresh["verdict"], verdict, atol=1e-5, strict=False)
    np.testing.assert_allclose(fresh["heatmap"], heatmap, atol=1e-4, strict=False)
    np.testing.assert_allclose(fresh["logits"], logits, atol=1e-4, strict=False)
    np.testing.assert_allclose(fresh["features"], features, atol=1e-4, strict=False)
    assert verdict.argmax(axis=1).tolist() == [0, 0, 1, 1]  # chihuahua, chihuahua, muffin, muffin
