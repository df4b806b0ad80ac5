"""The service's settings (muffin_v_chihuahua/service/settings.py): read from the environment, every bad value
named with its variable, the command line's options over the variables."""

from __future__ import annotations

import dataclasses
import os

import pytest

from muffin_v_chihuahua import uploads
from muffin_v_chihuahua.environment import (
    ENGINE_VARIABLE,
    MODEL_DIR_VARIABLE,
    NEITHER_THRESHOLD_VARIABLE,
    PRECISION_VARIABLE,
    SettingError,
)
from muffin_v_chihuahua.service.bodies import MULTIPART_OVERHEAD
from muffin_v_chihuahua.service.settings import (
    LOG_FORMAT_VARIABLE,
    MAX_FILES,
    MAX_FILES_VARIABLE,
    MAX_HELD_MB_VARIABLE,
    MAX_UPLOAD_MB_VARIABLE,
    Settings,
)

VARIABLES = (
    ENGINE_VARIABLE,
    PRECISION_VARIABLE,
    MODEL_DIR_VARIABLE,
    NEITHER_THRESHOLD_VARIABLE,
    MAX_UPLOAD_MB_VARIABLE,
    MAX_FILES_VARIABLE,
    MAX_HELD_MB_VARIABLE,
    LOG_FORMAT_VARIABLE,
)


@pytest.fixture(autouse=True)
def unset(monkeypatch):
    """None of the service's variables set, whatever the tests' own environment says."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_no_variable_gives_the_defaults():
    settings = Settings.from_environment()
    assert settings == Settings()
    assert (settings.engine, settings.precision, settings.model_dir, settings.neither_threshold) == (
        "auto",
        "auto",
        None,
        None,
    )
    assert (settings.max_upload_mb, settings.max_files, settings.max_held_mb) == (
        uploads.MAX_UPLOAD_MB,
        MAX_FILES,
        None,
    )
    assert settings.log_format == "text"


def test_every_variable_is_read(monkeypatch, tmp_path):
    values = {
        ENGINE_VARIABLE: "onnx",
        PRECISION_VARIABLE: "float32",
        MODEL_DIR_VARIABLE: str(tmp_path),
        NEITHER_THRESHOLD_VARIABLE: "0.25",
        MAX_UPLOAD_MB_VARIABLE: "0.5",
        MAX_FILES_VARIABLE: "2",
        MAX_HELD_MB_VARIABLE: "1.5",
        LOG_FORMAT_VARIABLE: "JSON",
    }
    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    assert Settings.from_environment() == Settings(
        engine="onnx",
        precision="float32",
        model_dir=tmp_path,
        neither_threshold=0.25,
        max_upload_mb=0.5,
        max_files=2,
        max_held_mb=1.5,
        log_format="json",
    )


def test_the_limits_in_bytes():
    settings = Settings(max_upload_mb=0.5, max_files=2)
    assert settings.max_bytes == 512 * 1024
    assert settings.request_limit == 2 * 512 * 1024 + MULTIPART_OVERHEAD


def test_the_command_lines_options_win_over_the_variables(monkeypatch, tmp_path):
    monkeypatch.setenv(ENGINE_VARIABLE, "keras")
    monkeypatch.setenv(PRECISION_VARIABLE, "float32")
    monkeypatch.setenv(MODEL_DIR_VARIABLE, str(tmp_path / "from-the-variable"))
    monkeypatch.setenv(NEITHER_THRESHOLD_VARIABLE, "0.9")
    given = Settings.from_environment(
        engine="onnx", precision="int8", model_dir=tmp_path / "given", neither_threshold=0.1
    )
    assert (given.engine, given.precision, given.model_dir, given.neither_threshold) == (
        "onnx",
        "int8",
        tmp_path / "given",
        0.1,
    )


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (ENGINE_VARIABLE, "tensorrt", "must be one of auto, onnx, keras, not 'tensorrt'"),
        (PRECISION_VARIABLE, "int4", "must be one of auto, int8, float32, not 'int4'"),
        (NEITHER_THRESHOLD_VARIABLE, "high", "could not convert string to float"),
        (NEITHER_THRESHOLD_VARIABLE, "1.5", "from 0 to 1"),
        (MAX_UPLOAD_MB_VARIABLE, "lots", "is not a valid float"),
        (MAX_UPLOAD_MB_VARIABLE, "0", "must be more than 0 and at most 10 (MB), not 0.0"),
        (MAX_UPLOAD_MB_VARIABLE, "11", "must be more than 0 and at most 10 (MB), not 11.0"),
        (MAX_FILES_VARIABLE, "2.5", "is not a valid int"),
        (MAX_FILES_VARIABLE, "0", "must be at least 1, not 0"),
        (MAX_HELD_MB_VARIABLE, "0", "must be more than 0 (MB), not 0.0"),
        (MAX_HELD_MB_VARIABLE, "-1", "must be more than 0 (MB), not -1.0"),
        (LOG_FORMAT_VARIABLE, "xml", "must be one of text, json, not 'xml'"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as refused:
        Settings.from_environment()
    message = str(refused.value)
    assert message.startswith(variable) and says in message, message


def test_settings_made_in_code_are_checked_too():
    with pytest.raises(SettingError, match=f"^{MAX_FILES_VARIABLE} must be at least 1"):
        Settings(max_files=0)
    with pytest.raises(SettingError, match=f"^{LOG_FORMAT_VARIABLE} must be one of"):
        dataclasses.replace(Settings(), log_format="xml")


def test_settings_cannot_change_once_made():
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_files = 0  # type: ignore[misc]


def test_each_variable_is_read_once(monkeypatch):
    """from_environment asks the environment once per variable: a value that changes meanwhile is not half-read."""
    asked: list[str] = []
    environ = dict(os.environ)

    class Counting(dict):
        def get(self, key, default=None):
            asked.append(key)
            return super().get(key, default)

        def __getitem__(self, key):
            asked.append(key)
            return super().__getitem__(key)

    monkeypatch.setattr(os, "environ", Counting(environ))
    Settings.from_environment()
    service_variables = [variable for variable in asked if variable in VARIABLES]
    assert sorted(service_variables) == sorted(set(service_variables)) and set(service_variables) == set(VARIABLES)
