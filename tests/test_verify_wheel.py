"""builders.verify_wheel: a wheel passes only with the model its card describes and every photo."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from builders import verify_wheel
from tests.conftest import PACKAGE, ROOT

PHOTO = "muffin_v_chihuahua/data/muffin/100.jpg"
MODEL = "muffin_v_chihuahua/model/muffin_v_chihuahua.h5"
INT8_MODEL = "muffin_v_chihuahua/model/muffin_v_chihuahua.int8.onnx"  # the default engine's model
CLASS_NAMES = "muffin_v_chihuahua/model/imagenet_classes.json"
REFERENCES = "muffin_v_chihuahua/model/neither_references.npy"  # the "neither" rule's muffins


def make_wheel(path: Path, drop: str = "", alter: str = "") -> Path:
    """A zip laid out like the wheel, from the built package files; optionally one member dropped or altered."""
    files = [*sorted((PACKAGE / "model").glob("*")), *sorted(p for p in (PACKAGE / "data").rglob("*") if p.is_file())]
    assert drop in ("", *(f.relative_to(ROOT).as_posix() for f in files))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        for file in files:
            member = file.relative_to(ROOT).as_posix()
            if member != drop:
                data = file.read_bytes()
                wheel.writestr(member, bytes([data[0] ^ 1]) + data[1:] if member == alter else data)
    return path


def test_a_complete_wheel_has_no_problems(tmp_path, capsys):
    wheel = make_wheel(tmp_path / "complete.whl")
    assert verify_wheel.verify(wheel) == []
    assert verify_wheel.main([str(wheel)]) == 0
    assert "all demo photos present" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ({"drop": PHOTO}, f"photo {PHOTO} is missing"),
        ({"alter": PHOTO}, f"photo {PHOTO} differs from the dataset"),
        ({"alter": MODEL}, f"{MODEL} does not have the SHA-256 its card states"),
        ({"drop": MODEL}, f"{MODEL} (keras model) is missing"),
        ({"drop": INT8_MODEL}, f"{INT8_MODEL} (onnx-int8 model) is missing"),
        ({"alter": INT8_MODEL}, f"{INT8_MODEL} does not have the SHA-256 its card states"),
        ({"alter": CLASS_NAMES}, f"{CLASS_NAMES} does not have the SHA-256 its card states"),
        ({"drop": CLASS_NAMES}, f"{CLASS_NAMES} (ImageNet class names) is missing"),
        ({"drop": REFERENCES}, f'{REFERENCES} ("neither" references) is missing'),
        ({"alter": REFERENCES}, f"{REFERENCES} does not have the SHA-256 its card states"),
        ({"drop": "muffin_v_chihuahua/data/SOURCE.md"}, "muffin_v_chihuahua/data/SOURCE.md is missing"),
        ({"alter": "muffin_v_chihuahua/data/SHA256SUMS"}, "is not the dataset the model was built on"),
    ],
)
def test_each_damage_is_reported(tmp_path, capsys, damage, expected):
    wheel = make_wheel(tmp_path / "damaged.whl", **damage)
    problems = verify_wheel.verify(wheel)
    assert any(expected in problem for problem in problems), problems
    assert verify_wheel.main([str(wheel)]) == 1
    assert expected in capsys.readouterr().err
