"""environment.setting: an unset or blank variable gives the default, a set one its value, a bad one a named error."""

from __future__ import annotations

import pytest

from muffin_v_chihuahua.environment import SettingError, setting

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
