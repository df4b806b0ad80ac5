"""Settings read from environment variables, the same way by the page, the service and the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ENGINE_VARIABLE = "MUFFIN_V_CHIHUAHUA_ENGINE"  # how the page and the container choose the engine (engines.ENGINES)
PRECISION_VARIABLE = "MUFFIN_V_CHIHUAHUA_PRECISION"  # and the model file's precision (engines.PRECISIONS)
# A model folder released apart from the app (run-demo, serve, predict and info take it as --model-dir).
MODEL_DIR_VARIABLE = "MUFFIN_V_CHIHUAHUA_MODEL_DIR"
# The "neither" rule's operating point (evidence.py) for the page, the service and the containers; predict's
# --neither-threshold. Unset: the card's.
NEITHER_THRESHOLD_VARIABLE = "MUFFIN_V_CHIHUAHUA_NEITHER_THRESHOLD"
INFERENCE_URL_VARIABLE = "INFERENCE_URL"  # set (e.g. http://ml-service:8000): the page asks that service (remote.py)


class SettingError(ValueError):
    """An environment variable with a value this program cannot use; the message says which and why."""


def setting(variable: str, kind: Callable[[str], T], default: T) -> T:
    """The variable's value as `kind` (int, float, str...), or default when it is unset or blank."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise SettingError(f"{variable}={value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def parse_neither_threshold(text: str) -> float:
    """A "neither" threshold: an evidence (a probability) from 0 to 1, else ValueError."""
    threshold = float(text)
    if not 0 <= threshold <= 1:
        raise ValueError(f"the neither threshold is an evidence from 0 to 1, not {text}")
    return threshold


def neither_threshold_from_environment() -> float | None:
    """The threshold MUFFIN_V_CHIHUAHUA_NEITHER_THRESHOLD sets, or None: the card's; a bad one raises SettingError."""
    value = setting(NEITHER_THRESHOLD_VARIABLE, str, "")
    try:
        return parse_neither_threshold(value) if value else None
    except ValueError as error:
        raise SettingError(f"{NEITHER_THRESHOLD_VARIABLE}={value!r}: {error}") from None


def model_dir_from_environment() -> Path | None:
    """The model folder MUFFIN_V_CHIHUAHUA_MODEL_DIR names, or None: the one in this package."""
    value = os.environ.get(MODEL_DIR_VARIABLE, "").strip()
    return Path(value) if value else None


def engine_from_environment() -> str:
    """The engine MUFFIN_V_CHIHUAHUA_ENGINE names, or "auto": the default of the page, the service and the CLI."""
    return setting(ENGINE_VARIABLE, str, "auto")


def precision_from_environment() -> str:
    """The precision MUFFIN_V_CHIHUAHUA_PRECISION names, or "auto"."""
    return setting(PRECISION_VARIABLE, str, "auto")
