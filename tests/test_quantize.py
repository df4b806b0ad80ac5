"""builders.quantize: the built int8 model is on the card with its gates' figures, and a model that changes a
verdict fails the gate."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from builders import quantize
from builders.data import sha256_of
from muffin_v_chihuahua import images
from muffin_v_chihuahua.evidence import EvidenceRule
from tests.conftest import PACKAGE

MODEL_DIR = PACKAGE / "model"
CARD = json.loads((MODEL_DIR / "card.json").read_text())
FLOAT_PATH = MODEL_DIR / CARD["files"]["onnx"]["file"]
INT8_PATH = MODEL_DIR / quantize.INT8_FILE


@pytest.fixture(scope="module")
def few_photos(labelled_photos) -> dict[str, tuple[list[str], np.ndarray]]:
    """Three of each class, as the build decodes them."""
    chosen = [photo for label in CARD["class_names"] for photo in labelled_photos if photo[0] == label][::20]
    size = tuple(CARD["input_size"])
    return {
        "dataset": (
            [path.name for _, path in chosen],
            np.stack([images.decode(p.read_bytes(), size) for _, p in chosen]),
        )
    }


@pytest.fixture(scope="module")
def rule() -> EvidenceRule:
    references = np.load(MODEL_DIR / CARD["neither"]["references"]["file"])
    return EvidenceRule.from_card(
        CARD["neither"], references, json.loads((MODEL_DIR / CARD["imagenet_class_names"]).read_text())
    )


def test_the_card_records_the_int8_file_its_making_and_its_gates():
    entry = CARD["files"]["onnx-int8"]
    assert entry["file"] == INT8_PATH.name and entry["sha256"] == sha256_of(INT8_PATH)
    assert entry["bytes"] == INT8_PATH.stat().st_size < CARD["files"]["onnx"]["bytes"] / 2
    made = CARD["quantization"]
    assert made["per_channel"] and made["calibration"]["photos"] == CARD["dataset"]["photos"]
    assert len(made["excluded_nodes"]) == 5  # named as in the pre-processed graph
    gates = made["gates"]
    assert gates["gated_outputs"] == CARD["outputs"]
    assert gates["dataset"]["photos"] == gates["dataset"]["same_verdicts"] == CARD["dataset"]["photos"]
    assert gates["negatives"]["photos"] == 27 and gates["negatives"]["same_verdicts"] >= 24
    # Where int8 differs on a sample picture, it is stricter: neither where float32 let it through.
    assert all(d.endswith(" in float32, neither in int8)") for d in gates["negatives"]["different_verdicts"])
    assert gates["augmented"]["photos"] == 9 * CARD["dataset"]["photos"] and gates["augmented"]["gate"] == "recorded"
    assert gates["dataset"]["heatmap_similarity"]["min"] >= quantize.HEATMAP_MIN_SIMILARITY
    for figures in (gates["dataset"], gates["negatives"]):
        assert list(figures["max_probability_difference"]) == ["imagenet", "verdict"]


def test_the_stem_the_head_the_heatmap_and_the_softmaxes_stay_in_float():
    model = onnx.load(FLOAT_PATH)
    convolutions = {node.name: node for node in model.graph.node if node.op_type == "Conv"}
    stem, head, heatmap, *softmaxes = quantize.kept_in_float(model)
    assert stem == next(iter(convolutions)) and len(convolutions) == 50
    assert "heatmap" in heatmap and convolutions[heatmap].input[1] != convolutions[head].input[1]
    assert CARD["heatmap"]["shape"][-1] == 2  # the heatmap's convolution: one map per class, from the head's 1280
    assert sorted(softmaxes) == sorted(node.name for node in model.graph.node if node.op_type == "Softmax")
    assert len(softmaxes) == 2  # ImageNet's softmax and the verdict's


def test_the_built_int8_model_passes_its_gate(few_photos, rule):
    figures = quantize.gate(FLOAT_PATH, INT8_PATH, few_photos, CARD["outputs"], rule, CARD["class_names"])
    assert figures["dataset"]["same_verdicts"] == len(few_photos["dataset"][0]) == 6
    assert 0 < figures["dataset"]["max_probability_difference"]["verdict"] < 0.05
    assert quantize.HEATMAP_MIN_SIMILARITY <= figures["dataset"]["heatmap_similarity"]["min"] < 1


def test_a_model_that_changes_verdicts_fails_the_gate(tmp_path, few_photos, rule):
    """The float32 model with the verdict head's weights negated: chihuahuas become muffins and back."""
    broken = negated(tmp_path, lambda node: node.op_type == "MatMul" and "verdict" in node.name)
    with pytest.raises(quantize.GateError, match=r"the int8 model fails \d+ gates: .*\(chihuahua in float32, "):
        quantize.gate(FLOAT_PATH, broken, few_photos, CARD["outputs"], rule, CARD["class_names"])


def test_on_pictures_that_are_neither_int8_may_be_stricter_but_never_more_lenient(tmp_path, few_photos, rule):
    """ImageNet's layer negated makes ImageNet's chihuahua the least likely class: that model calls the chihuahuas
    neither. Given the dataset photos as pictures that are neither ("catches"), the gate passes a model that calls
    neither what the other lets through, and stops one that lets through what the other calls neither."""
    broken = negated(tmp_path, lambda node: node.op_type == "MatMul" and "logits" in node.name)
    as_negatives = {"negatives": few_photos["dataset"]}
    figures = quantize.gate(FLOAT_PATH, broken, as_negatives, CARD["outputs"], rule, CARD["class_names"])
    stricter = figures["negatives"]["different_verdicts"]
    assert stricter and all(d.endswith("(chihuahua in float32, neither in int8)") for d in stricter)
    with pytest.raises(quantize.GateError, match=r"\(neither in float32, chihuahua in int8\)"):
        quantize.gate(broken, FLOAT_PATH, as_negatives, CARD["outputs"], rule, CARD["class_names"])


def test_a_model_whose_heatmaps_differ_fails_the_gate(tmp_path, few_photos, rule):
    """The heatmap's weights negated: the verdicts stand, but the map drawn is where float32's is not."""
    broken = negated(tmp_path, lambda node: node.op_type == "Conv" and "heatmap" in node.name)
    with pytest.raises(quantize.GateError, match=r"fails 6 gates: .*\.jpg \(heatmap -?\d\.\d\d alike\)"):
        quantize.gate(FLOAT_PATH, broken, few_photos, CARD["outputs"], rule, CARD["class_names"])
    few_photos_as_negatives = {"negatives": few_photos["dataset"]}  # recorded there, not gated
    figures = quantize.gate(FLOAT_PATH, broken, few_photos_as_negatives, CARD["outputs"], rule, CARD["class_names"])
    assert figures["negatives"]["heatmap_similarity"]["min"] < quantize.HEATMAP_MIN_SIMILARITY


def negated(folder, chosen) -> Path:
    """The float32 model with the weights of the one node `chosen` picks negated, saved in folder."""
    model = onnx.load(FLOAT_PATH)
    [node] = [node for node in model.graph.node if chosen(node)]
    for initializer in model.graph.initializer:
        if initializer.name in node.input[:2]:
            initializer.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(initializer), initializer.name))
    path = folder / "broken.onnx"
    onnx.save(model, path)
    return path


def test_a_model_without_the_outputs_the_gates_need_is_refused(few_photos, rule):
    with pytest.raises(quantize.GateError, match="has no features, imagenet_logits, verdict output"):
        quantize.build(FLOAT_PATH, few_photos, ["imagenet", "heatmap"], rule, CARD["class_names"])
