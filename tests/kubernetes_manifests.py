"""The manifests in deploy/kubernetes as `kubectl kustomize` renders them, and a container run the way they say.

rendered(overlay) is the overlay's objects (parsed with PyYAML); deployment() and container() pick one
workload and its container; run_options() turns that container's pod spec into `podman run` options: its
user, a read-only root with a tmpfs at each emptyDir mount, its CPU and memory limits, its environment, no
capabilities and no privilege escalation. tests/test_kubernetes.py and benchmarks/scaling.py use them.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("embedded", "split", "split-model-volume")

# Kubernetes quantities: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize deploy/kubernetes/overlays/<overlay>` renders."""
    if shutil.which("kubectl") is None:
        raise RuntimeError("kubectl is missing: it renders deploy/kubernetes (https://kubernetes.io/docs/tasks/tools/)")
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item["kind"] == kind]


def deployment(objects: tuple[dict[str, Any], ...], component: str) -> dict[str, Any]:
    """The Deployment whose pods carry app.kubernetes.io/component=<component> (service or page)."""
    [found] = [
        item
        for item in of_kind(objects, "Deployment")
        if item["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("500m", "1", "768Mi") as a number (cores, bytes)."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    if match is None or match[2] not in SUFFIXES:
        raise ValueError(f"not a quantity this project uses: {value!r}")
    return float(match[1]) * SUFFIXES[match[2]]


def run_options(workload: dict[str, Any]) -> list[str]:
    """`podman run` options that give the workload's container what its pod spec gives it."""
    pod = workload["spec"]["template"]["spec"]
    spec = container(workload)
    security = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}  # the container's wins
    limits = spec["resources"]["limits"]
    empty_dirs = {volume["name"]: volume["emptyDir"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
    options = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for mount in spec.get("volumeMounts", []):
        if mount["name"] in empty_dirs:
            size = empty_dirs[mount["name"]].get("sizeLimit")
            options += ["--tmpfs", mount["mountPath"] + (f":size={int(quantity(size))}" if size else "")]
    if "ALL" in security.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", "ALL"]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    options += ["--cpus", str(quantity(limits["cpu"])), "--memory", str(int(quantity(limits["memory"])))]
    for variable in spec.get("env", []):
        if "value" not in variable:  # valueFrom: only the kubelet can resolve it
            raise ValueError(f"{variable['name']} has no literal value to give a container outside a cluster")
        options += ["--env", f"{variable['name']}={variable['value']}"]
    return options


def grace_seconds(workload: dict[str, Any]) -> tuple[float, float]:
    """(the preStop sleep, the terminationGracePeriodSeconds it is part of)."""
    pod = workload["spec"]["template"]["spec"]
    pre_stop = container(workload).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    return pre_stop, pod.get("terminationGracePeriodSeconds", 30)
