"""deploy/kubernetes: the rendered manifests' policy, then the service image run the way they say.

The policy tests read what `kubectl kustomize` renders (make k8s-validate checks the schemas): every container's
probes, resources and security settings; probe paths and ports the images really serve (the dockerfile's
EXPOSE, CMD and HEALTHCHECK, the service's own routes); images by a release tag; the NetworkPolicy, the HPAs,
the PodDisruptionBudgets and the spread. The container test (marked `container`) runs the real service image
with the manifest's user, read-only root, tmpfs, limits and environment, probes it on the manifest's schedule,
and stops it during load as the kubelet would.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from muffin_v_chihuahua.service.app import create_app
from muffin_v_chihuahua.service.settings import Settings
from tests.conftest import ROOT
from tests.kubernetes_manifests import (
    OVERLAYS,
    container,
    deployment,
    grace_seconds,
    of_kind,
    quantity,
    rendered,
    run_options,
)
from tests.servers import free_port
from tests.test_container import ARTIFACTS, ULIMITS, make, podman

LABEL = "app.kubernetes.io/component"
IMAGE = "localhost/muffin-v-chihuahua-k8s"  # this module's own tag: make package-services builds IMAGE-service
SERVICE_PORT, PAGE_PORT = 8000, 8080
# Every workload of every overlay: embedded has the page alone, the split ones the service and the page.
WORKLOADS = [("embedded", "page")] + [(overlay, part) for overlay in OVERLAYS[1:] for part in ("service", "page")]


def workload(overlay: str, component: str) -> dict[str, Any]:
    return deployment(rendered(overlay), component)


def dockerfile_stage(name: str) -> str:
    """The text of the dockerfile's stage `name`, up to the next FROM."""
    return (ROOT / "dockerfile").read_text().split(f" AS {name}\n", 1)[1].split("\nFROM ", 1)[0]


def served_port(stage: str) -> int:
    """The port a stage's image serves: its EXPOSE, which its CMD must name as well."""
    text = dockerfile_stage(stage)
    [exposed] = re.findall(r"^EXPOSE (\d+)$", text, re.MULTILINE)
    [command] = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert f'"{exposed}"' in command, (stage, exposed, command)
    return int(exposed)


def probe_port(spec: dict[str, Any], probe: dict[str, Any]) -> int:
    """The container port a probe asks (a port's name resolved to its number)."""
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    [number] = [item["containerPort"] for item in spec["ports"] if item["name"] == port]
    return number


@pytest.fixture(scope="module")
def service_routes() -> set[str]:
    """The paths the service answers GET on, from its own app factory's OpenAPI schema (its routers' routes; the
    model is not loaded to list them)."""
    paths = create_app(Settings(engine="onnx")).openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


# ----- every container ------------------------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "component"), WORKLOADS)
def test_every_container_has_the_three_probes_with_a_startup_budget(overlay, component):
    spec = container(workload(overlay, component))
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "httpGet" in spec.get(kind, {}), (overlay, component, kind)
    startup = spec["startupProbe"]
    # The budget covers the measured start (under 4 s on one CPU, the comments in the manifests) many times.
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 30
    assert spec["livenessProbe"]["timeoutSeconds"] >= spec["readinessProbe"]["timeoutSeconds"]


@pytest.mark.parametrize(("overlay", "component"), WORKLOADS)
def test_every_container_has_cpu_and_memory_requests_and_limits(overlay, component):
    resources = container(workload(overlay, component))["resources"]
    for kind in ("cpu", "memory"):
        assert quantity(resources["requests"][kind]) > 0, (overlay, component, kind)
    assert quantity(resources["limits"]["memory"]) >= quantity(resources["requests"]["memory"])
    assert quantity(resources["limits"]["cpu"]) >= quantity(resources["requests"]["cpu"])


@pytest.mark.parametrize(("overlay", "component"), WORKLOADS)
def test_every_container_runs_locked_down_as_the_images_user(overlay, component):
    pod = workload(overlay, component)["spec"]["template"]["spec"]
    spec = container(workload(overlay, component))
    security = spec["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001 == pod["securityContext"]["runAsUser"]
    runtime = dockerfile_stage("runtime")  # the image's user, which the manifests must name
    assert re.search(r"useradd .*--uid 10001 ", runtime) and "\nUSER 10001:10001\n" in runtime
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # Python's and Streamlit's temporary files: /tmp is an emptyDir, the only writable path besides volumes.
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    assert {mount["mountPath"] for mount in spec["volumeMounts"] if mount["name"] in empty_dirs} == {"/tmp"}


@pytest.mark.parametrize(("overlay", "component"), WORKLOADS)
def test_shutdown_drops_the_endpoints_first_then_leaves_in_flight_requests_time(overlay, component):
    pre_stop, grace = grace_seconds(workload(overlay, component))
    # The service's uvicorn waits up to 10 s for in-flight requests (app.run's timeout_graceful_shutdown).
    assert pre_stop > 0 and pre_stop + 10 < grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_come_by_a_release_tag_never_latest(overlay):
    for item in of_kind(rendered(overlay), "Deployment"):
        for spec in item["spec"]["template"]["spec"]["containers"]:
            name, _, tag = spec["image"].rpartition(":")
            # Rewritten by the overlay's `images:` (the base's placeholder has no registry and no tag).
            assert "/" in name and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), spec["image"]


# ----- probes ask what the images serve ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["split", "split-model-volume"])
def test_the_service_probes_ask_its_ready_and_live_routes_on_its_port(overlay, service_routes):
    spec = container(workload(overlay, "service"))
    assert [item["containerPort"] for item in spec["ports"]] == [served_port("service")] == [SERVICE_PORT]
    assert {"/readyz", "/livez"} <= service_routes
    for kind, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        assert spec[kind]["httpGet"]["path"] == path and probe_port(spec, spec[kind]) == SERVICE_PORT, kind


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_page_probes_ask_streamlits_health_on_the_pages_port(overlay):
    spec = container(workload(overlay, "page"))
    assert [item["containerPort"] for item in spec["ports"]] == [served_port("page")] == [PAGE_PORT]
    # The image's own HEALTHCHECK asks the same path on the same port.
    assert f"http://127.0.0.1:{PAGE_PORT}/_stcore/health" in dockerfile_stage("page")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert spec[kind]["httpGet"]["path"] == "/_stcore/health" and probe_port(spec, spec[kind]) == PAGE_PORT


@pytest.mark.parametrize("overlay", ["split", "split-model-volume"])
def test_services_route_to_the_named_ports_of_their_pods(overlay):
    objects = rendered(overlay)
    for service in of_kind(objects, "Service"):
        pods = [
            item
            for item in of_kind(objects, "Deployment")
            if service["spec"]["selector"].items() <= item["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, service["metadata"]["name"]
        names = {port["name"] for port in container(pods[0])["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= names


# ----- the split overlay ------------------------------------------------------------------------------


def test_the_front_end_asks_the_service_by_its_cluster_dns_name():
    objects = rendered("split")
    [service] = [item for item in of_kind(objects, "Service") if item["spec"]["selector"].get(LABEL) == "service"]
    env = {variable["name"]: variable for variable in container(workload("split", "page"))["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    [port] = service["spec"]["ports"]
    assert env["INFERENCE_URL"]["value"] == (
        f"http://{service['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local:{port['port']}"
    )
    names = [variable["name"] for variable in container(workload("split", "page"))["env"]]
    assert names.index("POD_NAMESPACE") < names.index("INFERENCE_URL")  # the kubelet expands earlier variables only
    assert "muffin-v-chihuahua" in container(workload("split", "page"))["image"]


def test_only_the_pages_pods_reach_the_services_port():
    objects = rendered("split")
    service_pods = workload("split", "service")["spec"]["template"]["metadata"]["labels"]
    page_pods = workload("split", "page")["spec"]["template"]["metadata"]["labels"]
    [policy] = of_kind(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= service_pods.items()
    assert not spec["podSelector"]["matchLabels"].items() <= page_pods.items()  # it does not select the page
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}  # no namespaceSelector or ipBlock widening it
    admitted = source["podSelector"]["matchLabels"]
    assert admitted.items() <= page_pods.items() and not admitted.items() <= service_pods.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": SERVICE_PORT}]


def test_the_autoscalers_target_the_deployments_on_cpu_with_a_floor_of_two():
    objects = rendered("split")
    deployments = {item["metadata"]["name"] for item in of_kind(objects, "Deployment")}
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas} == deployments
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu" and 0 < metric["resource"]["target"]["averageUtilization"] < 100
        target = next(
            item
            for item in of_kind(objects, "Deployment")
            if item["metadata"]["name"] == hpa["spec"]["scaleTargetRef"]["name"]
        )
        assert quantity(container(target)["resources"]["requests"]["cpu"]) > 0  # utilisation is of the request


def test_each_deployment_has_a_disruption_budget_and_spreads_over_nodes():
    objects = rendered("split")
    budgets = of_kind(objects, "PodDisruptionBudget")
    for item in of_kind(objects, "Deployment"):
        labels = item["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, item["metadata"]["name"]
        assert covering[0]["spec"].get("maxUnavailable") == 1 or covering[0]["spec"].get("minAvailable") == 1
        spread = item["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert "kubernetes.io/hostname" in {constraint["topologyKey"] for constraint in spread}
        for constraint in spread:
            assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


def test_the_model_volume_overlay_mounts_a_model_folder_read_only_into_the_unchanged_service_image():
    plain, mounted = container(workload("split", "service")), container(workload("split-model-volume", "service"))
    assert mounted["image"] == plain["image"] and mounted.get("args") == plain.get("args") is None
    env = {variable["name"]: variable.get("value") for variable in mounted["env"]}
    [mount] = [item for item in mounted["volumeMounts"] if item["mountPath"] == env["MUFFIN_V_CHIHUAHUA_MODEL_DIR"]]
    assert mount["readOnly"] is True
    volumes = workload("split-model-volume", "service")["spec"]["template"]["spec"]["volumes"]
    [volume] = [item for item in volumes if item["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["readOnly"] is True


# ----- the real service image, run the way the manifest says -----------------------------------------


@pytest.fixture(scope="module")
def service_image() -> str:
    """Built by `make package-services` with this module's own tag (other tests build theirs)."""
    ARTIFACTS.mkdir(exist_ok=True)
    make(
        "package-services",
        "CONTAINER_ENGINE=podman",
        f"IMAGE={IMAGE}",
        log=ARTIFACTS / "kubernetes-build.log",
        timeout=3600,
    )
    return f"{IMAGE}-service"


def probe(port: int, spec: dict[str, Any]) -> int | str:
    """One kubelet httpGet probe: the status, or why there was none within its timeoutSeconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=spec.get("timeoutSeconds", 1))
    try:
        connection.request("GET", spec["httpGet"]["path"])
        return connection.getresponse().status
    except OSError as failure:
        return type(failure).__name__
    finally:
        connection.close()


@dataclass
class Load:
    """Clients posting photos, a new connection per request, each request named by its X-Request-ID, until
    stopped; what each came to at the client: an answer's status, or the error after it connected."""

    port: int
    bodies: list[bytes]
    stopped: threading.Event = field(default_factory=threading.Event)
    answered: dict[str, int] = field(default_factory=dict)  # request id: status
    failed: dict[str, str] = field(default_factory=dict)  # request id: why (connected, then no answer)
    refused: int = 0  # the connection was refused: the service no longer listened

    def client(self, number: int) -> None:
        index = number
        while not self.stopped.is_set():
            body, request_id = self.bodies[index % len(self.bodies)], f"k8s-test-{number}-{index}"
            index += 1
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                connection.connect()
            except ConnectionRefusedError:
                self.refused += 1
                time.sleep(0.05)
                continue
            headers = {"Content-Type": "image/jpeg", "Connection": "close", "X-Request-ID": request_id}
            try:
                connection.request("POST", "/predict", body, headers)
                answer = connection.getresponse()
                answer.read()
                self.answered[request_id] = answer.status
            except OSError as failure:
                self.failed[request_id] = f"{type(failure).__name__}: {failure}"
            finally:
                connection.close()


def logged_requests(stderr: str) -> tuple[dict[str, int], dict[str, int]]:
    """The service's own line for each /predict (MUFFIN_V_CHIHUAHUA_LOG_FORMAT=json) as request id: status; those
    logged before uvicorn's "Shutting down" (SIGTERM), and those after it: the requests in flight when it came."""
    assert "Shutting down" in stderr, stderr[-3000:]
    parts = stderr.split("Shutting down", 1)
    before, after = (
        {
            line["request_id"]: line["status"]
            for line in map(json.loads, re.findall(r"^\{.*\}$", part, re.MULTILINE))
            if line.get("path") == "/predict"
        }
        for part in parts
    )
    return before, after


@pytest.mark.container
def test_the_service_image_run_as_the_manifest_says_starts_in_budget_stays_live_and_drains_on_sigterm(
    service_image, dataset_dir
):
    service = workload("split", "service")
    spec = container(service)
    pre_stop, grace = grace_seconds(service)
    name, port = f"muffin-v-chihuahua-k8s-test-{os.getpid()}", free_port()
    photos = [path.read_bytes() for path in sorted(dataset_dir.glob("*/*.jpg"))]
    log: dict[str, Any] = {}
    load = Load(port, photos)
    clients = [threading.Thread(target=load.client, args=(number,)) for number in range(4)]
    try:
        podman(
            "run",
            "--detach",
            "--name",
            name,
            *ULIMITS,
            *run_options(service),
            "-p",
            f"127.0.0.1:{port}:8000",
            service_image,
        )
        inspected = podman(
            "inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}", name
        ).stdout.split()
        assert inspected == ["10001:10001", "true"]

        # startupProbe: every periodSeconds until it succeeds, at most failureThreshold failures.
        startup, started = spec["startupProbe"], time.monotonic()
        failures = 0
        while (status := probe(port, startup)) != 200:
            failures += 1
            assert failures < startup["failureThreshold"], (
                f"no startup within its budget: {status}\n{podman('logs', name).stderr}"
            )
            time.sleep(startup["periodSeconds"])
        log["startup probes failed before success"] = failures
        log["ready after (s)"] = round(time.monotonic() - started, 1)
        assert probe(port, spec["readinessProbe"]) == 200

        # Under load: readiness and liveness on their schedules, each answered within its timeout.
        for client in clients:
            client.start()
        answered_before = len(load.answered)
        liveness, readiness = spec["livenessProbe"], spec["readinessProbe"]
        for tick in range(liveness["periodSeconds"] * 2):  # two liveness periods, one second a tick
            if tick % liveness["periodSeconds"] == 0:
                assert probe(port, liveness) == 200, "liveness failed under load"
            if tick % readiness["periodSeconds"] == 0:
                assert probe(port, readiness) == 200, "readiness failed under load"
            time.sleep(1)
        assert len(load.answered) > answered_before, "no request was answered during the load"

        # The kubelet: the preStop sleep (the load goes on: endpoints may take that long to drop), then SIGTERM
        # and whatever of the grace period is left before SIGKILL. The load goes on through SIGTERM too.
        time.sleep(pre_stop)
        podman("stop", "--time", str(int(grace - pre_stop)), name, timeout=grace + 30)
        load.stopped.set()
        for client in clients:
            client.join(90)
        state = podman("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).stdout.split()
        output = podman("logs", name)
        before, in_flight = logged_requests(output.stderr)
        log.update(answered=len(load.answered), in_flight_at_sigterm=len(in_flight), refused=load.refused)
        log.update(failed_unaccepted=len(load.failed), exit=state)
        print(f"\nkubernetes container test: {log}")
        assert state == ["0", "false"], output.stderr[-3000:]  # it exited by itself: not killed, not out of memory
        assert in_flight, "no request was in flight at SIGTERM: the drain was not tested"
        accepted = {**before, **in_flight}  # every request the service read, with the status it answered
        assert set(accepted.values()) == {200}
        assert all(load.answered.get(request_id) == 200 for request_id in accepted)  # and the client got it
        assert set(load.answered.values()) == {200}
        # A connection that failed without an answer is one the service never read: the listener closing at
        # SIGTERM (in a cluster, the preStop sleep has taken the pod out of the endpoints by then).
        assert not set(load.failed) & set(accepted), load.failed
    finally:
        load.stopped.set()
        podman("rm", "--force", "--ignore", name, check=False)


# ----- the batch RayJob (KubeRay's ray.io/v1, which kubernetes-validate has no schema for) ---------------

# The fields of KubeRay's v1 API (ray-operator/apis/ray/v1: rayjob_types.go, raycluster_types.go) at each level
# this manifest uses, with the types it gives them: a misspelt or misplaced field fails here, as the CRD's
# structural schema would refuse it.
RAYJOB_SPEC = {
    "activeDeadlineSeconds": int, "backoffLimit": int, "rayClusterSpec": dict, "submitterPodTemplate": dict,
    "metadata": dict, "clusterSelector": dict, "submitterConfig": dict, "managedBy": str, "deletionStrategy": dict,
    "entrypoint": str, "runtimeEnvYAML": str, "jobId": str, "submissionMode": str, "entrypointResources": str,
    "entrypointNumCpus": float, "entrypointNumGpus": float, "ttlSecondsAfterFinished": int,
    "shutdownAfterJobFinishes": bool, "suspend": bool, "schedule": str,
}  # fmt: skip
RAYCLUSTER_SPEC = {
    "rayVersion": str, "enableInTreeAutoscaling": bool, "autoscalerOptions": dict, "headGroupSpec": dict,
    "workerGroupSpecs": list, "headServiceAnnotations": dict, "suspend": bool, "managedBy": str,
}  # fmt: skip
HEAD_GROUP = {"serviceType": str, "headService": dict, "enableIngress": bool, "rayStartParams": dict, "template": dict}
WORKER_GROUP = {
    "groupName": str, "replicas": int, "minReplicas": int, "maxReplicas": int, "numOfHosts": int,
    "rayStartParams": dict, "template": dict, "scaleStrategy": dict, "idleTimeoutSeconds": int, "suspend": bool,
}  # fmt: skip
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode")
BATCH = "../batch"  # deploy/kubernetes/batch, beside the overlays: rendered as they are


def rayjob() -> dict[str, Any]:
    [job] = of_kind(rendered(BATCH), "RayJob")
    return job


def assert_fields(where: str, found: dict[str, Any], known: dict[str, type]) -> None:
    unknown = sorted(set(found) - set(known))
    assert unknown == [], f"{where}: not in KubeRay's v1 API: {unknown}"
    mistyped = {name: value for name, value in found.items() if not isinstance(value, known[name])}
    assert mistyped == {}, f"{where}: of the wrong type: {mistyped}"


def ray_groups() -> list[tuple[str, dict[str, Any]]]:
    cluster = rayjob()["spec"]["rayClusterSpec"]
    return [("head", cluster["headGroupSpec"])] + [(group["groupName"], group) for group in cluster["workerGroupSpecs"]]


def as_workload(group: dict[str, Any]) -> dict[str, Any]:
    """A Ray group as the Deployment shape kubernetes_manifests reads (spec.template.spec)."""
    return {"spec": {"template": group["template"]}}


def test_the_rayjob_has_only_kuberay_v1_fields_of_their_types():
    job = rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert_fields("spec", job["spec"], RAYJOB_SPEC)
    assert job["spec"]["submissionMode"] in SUBMISSION_MODES
    assert_fields("rayClusterSpec", job["spec"]["rayClusterSpec"], RAYCLUSTER_SPEC)
    for name, group in ray_groups():
        assert_fields(name, group, HEAD_GROUP if name == "head" else WORKER_GROUP)
        params = group["rayStartParams"]
        assert all(isinstance(value, str) for value in params.values()), params  # map[string]string


def test_the_rayjobs_pod_templates_validate_strictly_as_kubernetes_pod_templates():
    import kubernetes_validate

    for name, group in ray_groups():
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": name},
            "template": group["template"],
        }
        kubernetes_validate.validate(template, "1.32.0", strict=True)


def test_the_rayjob_runs_batch_from_object_storage_to_a_new_folder_on_the_cluster_it_starts():
    spec = rayjob()["spec"]
    command = spec["entrypoint"].split()
    assert command[:2] == ["muffin-v-chihuahua", "batch"] and command[2].startswith("s3://")
    output = command[command.index("--output") + 1]
    assert output.startswith("s3://") and "$(date" in output  # each run its own folder: batch never overwrites
    assert command[command.index("--ray-address") + 1] == "auto"
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert (
        spec["rayClusterSpec"]["rayVersion"]
        == re.search(r"^ray==(\S+) ", (ROOT / "requirements" / "ray.txt").read_text(), re.M)[1]
    )


def test_the_rayjobs_containers_are_locked_down_by_a_release_tag_with_scratch_and_an_object_store():
    for name, group in ray_groups():
        pod = group["template"]["spec"]
        [spec] = pod["containers"]
        assert spec["image"].endswith(":0.1.0") and "muffin-v-chihuahua-batch" in spec["image"], name
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
        security = spec["securityContext"]
        assert security["readOnlyRootFilesystem"] and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert spec["resources"]["requests"] == spec["resources"]["limits"], name
        mounts = {mount["mountPath"] for mount in spec["volumeMounts"]}
        assert {"/tmp", "/dev/shm"} <= mounts, name  # Ray's session files; its object store, in memory
        assert spec["envFrom"] == [{"secretRef": {"name": "muffin-v-chihuahua-object-storage"}}]
        assert pod["automountServiceAccountToken"] is False


@pytest.fixture(scope="module")
def batch_image() -> str:
    """Built by `make package-batch` with this module's own tag."""
    ARTIFACTS.mkdir(exist_ok=True)
    make("package-batch", "CONTAINER_ENGINE=podman", f"IMAGE={IMAGE}", log=ARTIFACTS / "batch-build.log", timeout=3600)
    return f"{IMAGE}-batch"


@pytest.mark.container
def test_the_batch_image_run_as_a_ray_worker_is_run_classifies_photos_with_its_own_ray(batch_image, dataset_dir):
    """The worker group's container as its pod spec says (user, read-only root, tmpfs for /tmp and /dev/shm, its
    CPU and memory limits): Ray started in it as KubeRay starts a node, then the RayJob's command, on photos."""
    [(_, workers)] = [(name, group) for name, group in ray_groups() if name != "head"]
    options = run_options(as_workload(workers))
    script = (
        "ray start --head --num-cpus=2 --include-dashboard=false --disable-usage-stats --node-ip-address=127.0.0.1"
        " >/dev/null && muffin-v-chihuahua batch /photos --output /tmp/verdicts --format jsonl --ray-address auto"
        " 2>/tmp/log; status=$?; cat /tmp/verdicts/*.json; exit $status"
    )
    result = podman(
        "run", "--rm", *ULIMITS, *options, "--env", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0",
        "-v", f"{dataset_dir}:/photos:ro", batch_image, "sh", "-c", script, timeout=600,
    )  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(list(dataset_dir.glob("*/*.jpg"))) == 120
    assert all(row["error"] is None for row in rows)
    assert sum(row["verdict"] == row["path"].split("/")[2] for row in rows) >= 118  # chihuahua/…, muffin/…
