"""How many CPUs this process may use, on any OS: what sizes the inference thread pools."""

from __future__ import annotations

import os


def usable() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (Linux: a container's CPU set),
    else every CPU of the machine (macOS, Windows); never less than 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # cpu_count() is None when the OS cannot tell
