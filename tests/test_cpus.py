"""cpus: how many CPUs this process may use: affinity mask (Linux) or every CPU (macOS, Windows), capped by a
cgroup CPU quota (v2 cpu.max, v1 cfs_quota_us over cfs_period_us), overridden by MUFFIN_V_CHIHUAHUA_CPUS.

The cgroup trees are fake folders laid out as a container sees its own cgroup at /sys/fs/cgroup."""

import os

import pytest

from muffin_v_chihuahua import cpus
from muffin_v_chihuahua.environment import SettingError


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(cpus.OVERRIDE_VARIABLE, raising=False)


@pytest.fixture
def four_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def cgroup_v2(root, cpu_max):
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root, quota, period="100000"):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


def test_the_affinity_mask_counts_where_the_os_has_one(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the host's count, larger than this process's share
    assert cpus.usable(tmp_path) == 3


def test_without_an_affinity_mask_every_cpu_counts(monkeypatch, tmp_path):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpus.usable(tmp_path) == 6


def test_never_fewer_than_one(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(), raising=False)
    assert cpus.usable(tmp_path) == 1
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the OS cannot tell
    assert cpus.usable(tmp_path) == 1


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("100000 100000", 1), ("150000 100000", 2), ("10000 100000", 1), ("max 100000", 4), ("800000 100000", 4)],
)
def test_a_cgroup_v2_quota_caps_the_cpus_rounded_up(four_cpus, tmp_path, cpu_max, expected):
    assert cpus.usable(cgroup_v2(tmp_path, cpu_max)) == expected


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("100000", "100000", 1), ("250000", "100000", 3), ("50000", "200000", 1), ("-1", "100000", 4)],
)
def test_a_cgroup_v1_quota_caps_the_cpus_rounded_up(four_cpus, tmp_path, quota, period, expected):
    """v1 is what a container sees on these machines: 100000/100000 under `podman run --cpus 1`."""
    assert cpus.usable(cgroup_v1(tmp_path, quota, period)) == expected


def test_the_reason_names_the_quota_when_it_is_what_limits(four_cpus, tmp_path):
    assert cpus.limit(cgroup_v1(tmp_path, "150000")) == (2, "the cgroup CPU quota, 1.5 of 4 CPUs")
    assert cpus.limit(tmp_path / "none") == (4, "the CPUs this process may run on")


def test_an_unreadable_or_malformed_quota_is_no_limit(four_cpus, tmp_path):
    assert cpus.cgroup_quota(tmp_path) is None  # no cgroup files at all (not Linux, or not mounted)
    assert cpus.usable(cgroup_v2(tmp_path, "garbage")) == 4


def test_the_override_wins_over_the_quota_and_the_affinity(monkeypatch, four_cpus, tmp_path):
    monkeypatch.setenv(cpus.OVERRIDE_VARIABLE, "6")
    assert cpus.limit(cgroup_v1(tmp_path, "100000")) == (6, f"${cpus.OVERRIDE_VARIABLE}")


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "many"])
def test_an_override_that_is_not_a_positive_whole_number_is_refused(monkeypatch, value):
    monkeypatch.setenv(cpus.OVERRIDE_VARIABLE, value)
    with pytest.raises(SettingError, match=cpus.OVERRIDE_VARIABLE):
        cpus.usable()


def test_this_machine_has_at_least_one_usable_cpu():
    assert 1 <= cpus.usable() <= cpus.affinity_cpus()
