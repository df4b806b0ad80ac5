"""Settings read from environment variables, the same way by the page, the service and the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
