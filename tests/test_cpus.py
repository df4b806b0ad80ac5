"""cpus: how many CPUs this process may use, on Linux (affinity mask) and elsewhere (macOS, Windows)."""

import os

from muffin_v_chihuahua import cpus


def test_the_affinity_mask_counts_where_the_os_has_one(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the host's count, larger than this process's share
    assert cpus.usable() == 3


def test_without_an_affinity_mask_every_cpu_counts(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpus.usable() == 6


def test_never_fewer_than_one(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(), raising=False)
    assert cpus.usable() == 1
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the OS cannot tell
    assert cpus.usable() == 1


def test_this_machine_has_at_least_one_usable_cpu():
    assert 1 <= cpus.usable() <= (os.cpu_count() or 1)
