"""environment.py: an unset or blank variable gives the default, a set one its value, a bad one a named error; the
engine and precision every entrance defaults to, read in one place."""

from __future__ import annotations

import pytest

from muffin_v_chihuahua.environment import (
    ENGINE_VARIABLE,
    PRECISION_VARIABLE,
    SettingError,
    engine_from_environment,
    precision_from_environment,
    setting,
)

VARIABLE = "MUFFIN_V_CHIHUAHUA_TEST_SETTING"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_an_unset_or_blank_variable_gives_the_default(value, monkeypatch):
    if value is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, value)
    assert setting(VARIABLE, int, 7) == 7


def test_a_set_variable_gives_its_value_as_the_kind_asked(monkeypatch):
    monkeypatch.setenv(VARIABLE, " 2.5 ")
    assert setting(VARIABLE, float, 1.0) == 2.5


def test_a_value_of_the_wrong_kind_names_the_variable_and_the_kind(monkeypatch):
    monkeypatch.setenv(VARIABLE, "lots")
    with pytest.raises(SettingError, match=f"^{VARIABLE}='lots' is not a valid int$"):
        setting(VARIABLE, int, 1)


@pytest.mark.parametrize(
    ("set_to", "expected"), [({}, ("auto", "auto")), ({"engine": " ", "precision": ""}, ("auto", "auto")),
                             ({"engine": " onnx ", "precision": "float32"}, ("onnx", "float32"))]
)  # fmt: skip
def test_the_page_the_service_and_the_cli_take_their_default_engine_from_one_reading(set_to, expected, monkeypatch):
    from muffin_v_chihuahua.__main__ import parser
    from muffin_v_chihuahua.service import Settings

    for name, variable in (("engine", ENGINE_VARIABLE), ("precision", PRECISION_VARIABLE)):
        monkeypatch.delenv(variable, raising=False)
        if name in set_to:
            monkeypatch.setenv(variable, set_to[name])
    assert (engine_from_environment(), precision_from_environment()) == expected
    options = parser().parse_args(["info"])
    assert (options.engine, options.precision) == expected
    settings = Settings.from_environment()
    assert (settings.engine, settings.precision) == expected
