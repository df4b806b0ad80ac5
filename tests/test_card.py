"""The model card (muffin_v_chihuahua/card.py): the bundled card.json read and written back unchanged, and every
entry the app reads checked: a missing or mistyped one is a ModelFilesError naming it."""

from __future__ import annotations

import copy
import json

import pytest

from muffin_v_chihuahua.card import REPAIR, ModelCard, ModelFile, ModelFilesError
from tests.servers import CARD, PACKAGE

CARD_FILE = PACKAGE / "model" / "card.json"


def test_the_bundled_card_is_read_and_written_back_as_it_is(tmp_path):
    card = ModelCard.from_file(CARD_FILE)
    assert card.to_dict() == CARD
    assert card.input_size == tuple(CARD["input_size"]) and card.class_names == tuple(CARD["class_names"])
    assert card.files["onnx"] == ModelFile(**CARD["files"]["onnx"])
    assert card.neither_threshold == CARD["neither"]["threshold"] and card.more["outputs"] == CARD["outputs"]
    card.write(tmp_path / "card.json")
    assert json.loads((tmp_path / "card.json").read_text()) == CARD
    assert ModelCard.from_file(tmp_path / "card.json") == card


DELETED = object()


def edited(entry: tuple[str, ...], value: object = DELETED) -> dict:
    """The bundled card with `entry` set to value, or deleted."""
    card = copy.deepcopy(CARD)
    *parents, last = entry
    parent = card
    for key in parents:
        parent = parent[key]
    if value is DELETED:
        del parent[last]
    else:
        parent[last] = value
    return card


@pytest.mark.parametrize(
    "entry",
    [
        ("model_version",),
        ("built_at",),
        ("files", "onnx", "sha256"),
        ("neither", "references"),
        ("neither", "references", "file"),
        ("evaluation", "accuracy"),
        ("dataset", "sha256"),
    ],
    ids=".".join,
)
def test_a_missing_entry_is_named(entry):
    with pytest.raises(ModelFilesError) as refused:
        ModelCard.from_dict(edited(entry), CARD_FILE)
    assert str(refused.value) == f"{CARD_FILE} has no {'.'.join(entry)!r} entry: {REPAIR}"
    assert refused.value.path == CARD_FILE


@pytest.mark.parametrize(
    ("value", "entry", "says"),
    [
        ("224", ("input_size",), "'input_size' entry that is not a list: '224'"),
        ([224], ("input_size",), "'input_size' entry that is not [width, height]: [224]"),
        ([224.0, 224], ("input_size",), "'input_size' entry that is not [width, height]"),
        ([0, 1], ("class_names",), "'class_names' entry that is not a list of strings"),
        ("0.08", ("neither", "threshold"), "'neither.threshold' entry that is not a number: '0.08'"),
        (True, ("files", "onnx", "bytes"), "'files.onnx.bytes' entry that is not a whole number: True"),
        (None, ("files", "keras"), "'files.keras' entry that is not an object: None"),
        (7, ("model_version",), "'model_version' entry that is not a string: 7"),
    ],
    ids=["size-text", "size-one", "size-float", "class-names", "threshold-text", "bytes-bool", "file-null", "version"],
)
def test_a_mistyped_entry_is_named_with_its_value(value, entry, says):
    with pytest.raises(ModelFilesError, match=r"card\.json has a") as refused:
        ModelCard.from_dict(edited(entry, value), CARD_FILE)
    assert says in str(refused.value)


def test_a_card_that_is_not_a_json_object_is_damaged(tmp_path):
    (tmp_path / "card.json").write_text("[]")
    with pytest.raises(ModelFilesError, match="is damaged: it is not a JSON object"):
        ModelCard.from_file(tmp_path / "card.json")
    (tmp_path / "card.json").write_text("{")
    with pytest.raises(ModelFilesError, match="is damaged: it is not valid JSON"):
        ModelCard.from_file(tmp_path / "card.json")
    with pytest.raises(ModelFilesError, match=r"missing\.json is missing"):
        ModelCard.from_file(tmp_path / "missing.json")
