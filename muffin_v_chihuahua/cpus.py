"""How many CPUs this process may use, on any OS: what sizes the inference threads and the service's workers.

A container's CPU limit (`podman run --cpus 1`, a Kubernetes pod's `limits.cpu`) is a CFS quota, not a CPU
set: the process still sees every host core in its affinity mask, and one thread per core is throttled. So
the quota counts too, rounded up. MUFFIN_V_CHIHUAHUA_CPUS overrides both.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from muffin_v_chihuahua.environment import SettingError

OVERRIDE_VARIABLE = "MUFFIN_V_CHIHUAHUA_CPUS"
# A container sees its own cgroup at the mount's root (cgroup namespace or runc's bind mount).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs to use: the override, else the affinity CPUs capped by the cgroup's CPU quota; at least 1."""
    return limit(cgroup_root)[0]


def limit(cgroup_root: Path = CGROUP_ROOT) -> tuple[int, str]:
    """usable() and where it comes from, for a person (the `info` command, the service's start-up line)."""
    override = os.environ.get(OVERRIDE_VARIABLE, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise SettingError(f"{OVERRIDE_VARIABLE} must be a whole number of CPUs, at least 1, not {override!r}")
        return int(override), f"${OVERRIDE_VARIABLE}"
    cpus = affinity_cpus()
    quota = cgroup_quota(cgroup_root)
    if quota is not None and math.ceil(quota) < cpus:
        return max(1, math.ceil(quota)), f"the cgroup CPU quota, {quota:g} of {cpus} CPUs"
    return cpus, "the CPUs this process may run on"


def affinity_cpus() -> int:
    """Its affinity mask where the OS has one (Linux: a container's CPU set), else every CPU of the machine
    (macOS, Windows); never less than 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # cpu_count() is None when the OS cannot tell


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time per period the cgroup allows (1.5: one and a half CPUs), or None: no quota, or no
    cgroup (not Linux). cgroup v2's cpu.max first ("max 100000": none), else v1's cfs_quota_us (-1: none)."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    return _ratio(_read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us"))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ratio(quota: str | None, period: str | None) -> float | None:
    try:
        quota_us, period_us = int(quota or ""), int(period or "")
    except ValueError:  # "max", missing or unreadable: no quota to follow
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
