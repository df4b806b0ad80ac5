"""The hash-locked requirements/*.txt (`make lock`): pinned, hashed, one version per package, each role its own."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements"
SETUP_CFG = REQUIREMENTS.parent / "setup.cfg"
# This project's roles: one version per package across them. The *-image locks are the role images' (dockerfile):
# only what that role imports, so not every requirement of the wheel.
LOCKS = ("dev", "build", "app", "keras", "service", "ray", "service-image", "frontend-image")
# What a role image's lock must leave out: the service has no page, the front end runs no model.
LEFT_OUT = {"service-image": ("streamlit", "pyarrow", "pandas", "pydeck"), "frontend-image": ("onnxruntime",)}
CLIENT_LOCK = "client"  # a third-party client's own venv, compiled alone (see requirements/client.in)
# One pinned requirement and its hashes, as pip-compile writes it on backslash-continued lines.
PINNED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?: --hash=sha256:[0-9a-f]{64})+")
# The build needs scikit-learn; Keras imports it whenever it is installed (+0.6 s start-up), so the runtime must not.
BUILD_ONLY = "scikit-learn"


def entries(lock: str) -> list[str]:
    """The lock's requirement lines, continuations joined and comments dropped."""
    text = (REQUIREMENTS / f"{lock}.txt").read_text()
    lines = (line.split("#", 1)[0].strip() for line in text.replace("\\\n", " ").splitlines())
    return [" ".join(line.split()) for line in lines if line]


def pins(lock: str) -> dict[str, str]:
    """Package -> pinned version."""
    matches = [PINNED.fullmatch(entry) for entry in entries(lock)]
    return {canonicalize_name(m["name"]): m["version"] for m in matches if m}


def setup_cfg_requirements(*extras: str) -> list[Requirement]:
    """install_requires plus the named extras of setup.cfg."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    groups = [config["options"]["install_requires"]] + [config["options.extras_require"][extra] for extra in extras]
    return [Requirement(line) for group in groups for line in group.splitlines() if line.strip()]


def input_requirements(name: str) -> list[Requirement]:
    """The requirements of requirements/<name>.in, following its -r includes."""
    found = []
    for line in (REQUIREMENTS / f"{name}.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += input_requirements(Path(line[3:].strip()).stem)
        elif line:
            found.append(Requirement(line))
    return found


@pytest.mark.parametrize("lock", [*LOCKS, CLIENT_LOCK])
def test_every_line_pins_one_version_with_its_hashes(lock):
    listed = entries(lock)
    assert listed, f"{lock}.txt lists nothing"
    assert [entry for entry in listed if not PINNED.fullmatch(entry)] == []


def test_a_package_has_the_same_version_in_every_lock():
    versions: dict[str, set[str]] = {}
    for lock in LOCKS:
        for name, version in pins(lock).items():
            versions.setdefault(name, set()).add(version)
    assert {name: found for name, found in versions.items() if len(found) > 1} == {}


def test_the_build_only_package_stays_out_of_the_runtime():
    assert {lock: BUILD_ONLY in pins(lock) for lock in LOCKS} == {
        "dev": True,
        "build": True,
        "app": False,
        "keras": False,
        "service": False,
        "ray": False,
        "service-image": False,
        "frontend-image": False,
    }


def test_a_role_images_lock_leaves_out_what_its_role_never_imports():
    assert {lock: sorted(set(left_out) & set(pins(lock))) for lock, left_out in LEFT_OUT.items()} == {
        lock: [] for lock in LEFT_OUT
    }


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("app", setup_cfg_requirements()),
        ("keras", setup_cfg_requirements("keras")),
        ("service", setup_cfg_requirements("service")),
        ("ray", setup_cfg_requirements("ray")),
        ("build", input_requirements("build")),
        ("service-image", input_requirements("service-image")),
        ("frontend-image", input_requirements("frontend-image")),
        ("dev", setup_cfg_requirements("keras", "service", "ray") + input_requirements("dev")),
        (CLIENT_LOCK, input_requirements(CLIENT_LOCK)),
    ],
)
def test_each_lock_pins_what_its_role_requires_within_range(lock, requirements):
    """A requirement edited in setup.cfg or requirements/*.in without `make lock` fails here."""
    pinned = pins(lock)
    unmet = [
        str(r)
        for r in requirements
        if canonicalize_name(r.name) not in pinned or not r.specifier.contains(pinned[canonicalize_name(r.name)])
    ]
    assert unmet == [], f"{lock}.txt misses or contradicts these: run `make lock`"
