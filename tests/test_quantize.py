"""builders.quantize: the built int8 model is on the card with its gates' figures, and a model that changes a
verdict fails the gate."""

import json

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
        "few": ([path.name for _, path in chosen], np.stack([images.decode(p.read_bytes(), size) for _, p in chosen]))
    }


@pytest.fixture(scope="module")
def rule() -> EvidenceRule:
    return EvidenceRule.from_card(CARD["neither"], json.loads((MODEL_DIR / CARD["imagenet_class_names"]).read_text()))


def test_the_card_records_the_int8_file_its_making_and_its_gates():
    entry = CARD["files"]["onnx-int8"]
    assert entry["file"] == INT8_PATH.name and entry["sha256"] == sha256_of(INT8_PATH)
    assert entry["bytes"] == INT8_PATH.stat().st_size < CARD["files"]["onnx"]["bytes"] / 2
    made = CARD["quantization"]
    assert made["per_channel"] and made["calibration"]["photos"] == CARD["dataset"]["photos"]
    assert len(made["excluded_nodes"]) == 4  # named as in the pre-processed graph
    gates = made["gates"]
    assert gates["dataset"]["photos"] == gates["dataset"]["same_verdicts"] == CARD["dataset"]["photos"]
    assert gates["negatives"]["photos"] == gates["negatives"]["same_verdicts"] >= 24
    for figures in (gates["dataset"], gates["negatives"]):
        assert list(figures["max_probability_difference"]) == CARD["outputs"]


def test_the_first_and_last_convolutions_and_the_softmaxes_stay_in_float():
    model = onnx.load(FLOAT_PATH)
    convolutions = [node.name for node in model.graph.node if node.op_type == "Conv"]
    kept = quantize.kept_in_float(model)
    assert kept[:2] == [convolutions[0], convolutions[-1]] and len(convolutions) == 49
    assert sorted(kept[2:]) == sorted(node.name for node in model.graph.node if node.op_type == "Softmax")
    assert len(kept) == 4  # ImageNet's softmax and the verdict's


def test_the_built_int8_model_passes_its_gate(few_photos, rule):
    figures = quantize.gate(FLOAT_PATH, INT8_PATH, few_photos, CARD["outputs"], rule, CARD["class_names"])
    assert figures["few"]["same_verdicts"] == len(few_photos["few"][0]) == 6
    assert 0 < figures["few"]["max_probability_difference"]["verdict"] < 0.05


def test_a_model_that_changes_verdicts_fails_the_gate(tmp_path, few_photos, rule):
    """The float32 model with the verdict head's weights negated: chihuahuas become muffins and back."""
    model = onnx.load(FLOAT_PATH)
    [head] = [node for node in model.graph.node if node.op_type == "MatMul" and "verdict" in node.name]
    for initializer in model.graph.initializer:
        if initializer.name in head.input:
            initializer.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(initializer), initializer.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    with pytest.raises(quantize.GateError, match=r"the int8 model changes \d+ verdicts: .*\(chihuahua in float32, "):
        quantize.gate(FLOAT_PATH, broken, few_photos, CARD["outputs"], rule, CARD["class_names"])


def test_a_model_without_the_outputs_the_gates_need_is_refused(few_photos, rule):
    with pytest.raises(quantize.GateError, match="has no verdict output"):
        quantize.build(FLOAT_PATH, few_photos, ["imagenet", "heatmap"], rule, CARD["class_names"])
