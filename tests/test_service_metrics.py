"""The service's probes, metrics and request logs, with a real server process over real HTTP.

/livez and /readyz once the model is loaded, and a model that fails to load (the process exits 1 naming why;
before it loads and when it fails: test_service_health.py, in process); /metrics parsed as Prometheus parses it after a few predictions; the request id echoed and
in the JSON log line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from muffin_v_chihuahua import __version__, cpus
from muffin_v_chihuahua.environment import MODEL_DIR_VARIABLE
from tests.conftest import DEFAULT_FILES
from tests.servers import (
    PACKAGE,
    ServiceProcess,
    answers,
    get,
    post_files,
    post_image,
    request,
)

pytestmark = pytest.mark.service

CARD = json.loads((PACKAGE / "model" / "card.json").read_text())
PREFIX = "muffin_v_chihuahua_"
REQUEST_ID = "test-request-0001"


def photo(label: str, index: int = 0) -> bytes:
    return sorted((PACKAGE / "data" / label).glob("*.jpg"))[index].read_bytes()


def log_lines(service: ServiceProcess) -> list[dict]:
    """The JSON lines of the service's log (uvicorn's own lines are not JSON)."""
    return [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]


def scrape(url: str) -> dict:
    """GET /metrics, parsed: {family name: family}."""
    response = requests.get(url + "/metrics", timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict, sample_name: str, **labels: str) -> float:
    """The value of the one sample with that name and those labels (0 if there is none)."""
    family_name = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    found = [
        sample.value
        for sample in families[family_name].samples
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, found
    return found[0] if found else 0.0


# ----- probes -----------------------------------------------------------------------------------------


def test_livez_answers_and_readyz_turns_200_as_health_does(tmp_path):
    service = ServiceProcess("onnx", log=tmp_path / "service.log").start()
    try:
        for status, body in answers(service.url + "/readyz", 240, service.process, interval=0.05):
            if status == 200:
                break
            assert (status, body["status"], get(service.url + "/livez")) == (503, "loading", (200, {"status": "alive"}))
        assert get(service.url + "/livez") == (200, {"status": "alive"})
        assert get(service.url + "/readyz") == get(service.url + "/") and get(service.url + "/")[0] == 200
        # The default log format is a readable line per request, with its id.
        assert any(" GET /livez 200 " in line and " request " in line for line in service.log().splitlines())
    finally:
        service.stop()


def readiness_until_exit(service: ServiceProcess) -> list[tuple[int, dict]]:
    """Every (status, body) /readyz answers until the process exits (answers() then gives up)."""
    seen: list[tuple[int, dict]] = []
    try:
        for answer in answers(service.url + "/readyz", 240, service.process, interval=0.05):
            seen.append(answer)
    except AssertionError as error:
        if "exited" not in str(error):  # gave up waiting: the process did not exit
            raise
    return seen


def test_a_model_that_fails_to_load_is_reported_then_the_process_exits_1_naming_why(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(PACKAGE / "model", model_dir)
    damaged = model_dir / CARD["files"][DEFAULT_FILES["onnx"]]["file"]  # the file the onnx engine runs by default
    data = bytearray(damaged.read_bytes())
    data[1000:1100] = bytes(100)
    damaged.write_bytes(bytes(data))
    service = ServiceProcess("onnx", log=tmp_path / "service.log", args=["--model-dir", str(model_dir)]).start()
    assert service.process is not None
    try:
        seen = readiness_until_exit(service)
        status = service.process.wait(timeout=60)
    finally:
        service.stop()
    log = service.log()
    assert status == 1, log
    assert all(status == 503 for status, _ in seen), seen  # none if it failed before it answered
    for _, body in seen:  # the failure, when a probe caught it before the exit, says why
        if body["status"] == "failed":
            assert "damaged" in body["detail"] and str(damaged) in body["detail"], body
    last = log.strip().splitlines()[-1]
    assert last.startswith("muffin-v-chihuahua: the model could not be loaded: ModelFilesError: "), log
    assert str(damaged) in last and "damaged" in last, log


def test_a_model_folder_released_apart_is_served_with_its_own_version(tmp_path):
    """The same app, another model folder (MUFFIN_V_CHIHUAHUA_MODEL_DIR) with its own version: the health answer
    and the metrics tell the two versions apart. Its start-up line names the CPUs it sized itself by."""
    model_dir = Path(shutil.copytree(PACKAGE / "model", tmp_path / "model", ignore=shutil.ignore_patterns("*.h5")))
    card = json.loads((model_dir / "card.json").read_text())
    (model_dir / "card.json").write_text(json.dumps({**card, "model_version": "2099.01.01+apart"}))
    env = {MODEL_DIR_VARIABLE: str(model_dir), cpus.OVERRIDE_VARIABLE: "1"}
    with ServiceProcess("onnx", env=env, log=tmp_path / "service.log") as service:
        status, health = get(service.url + "/readyz")
        families = scrape(service.url)
        log = service.log()
    assert status == 200 and (health["model_version"], health["app_version"]) == ("2099.01.01+apart", __version__)
    [sample] = families[PREFIX + "model_info"].samples
    assert (sample.labels["model_version"], sample.labels["app_version"]) == ("2099.01.01+apart", __version__)
    assert f"CPUs: 1 (${cpus.OVERRIDE_VARIABLE}): 1 inference workers" in log


# ----- metrics and request logs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    log = tmp_path_factory.mktemp("service-metrics") / "service.log"
    with ServiceProcess("onnx", env={"MUFFIN_V_CHIHUAHUA_LOG_FORMAT": "json"}, log=log) as running:
        yield running


@pytest.fixture(scope="module")
def traffic(service):
    """A few requests: two multipart predictions (3 images), a neither as a raw body, a refused body, a 404;
    then the metrics they left. Returns (verdicts the service gave, metric families)."""
    from builders.neither import negative_photos

    verdicts = []
    for files in (
        [("m0.jpg", photo("muffin", 0)), ("c0.jpg", photo("chihuahua", 0))],
        [("m1.jpg", photo("muffin", 1))],
    ):
        status, body = post_files(service.url, files)
        assert status == 200, body
        verdicts += [prediction["verdict"] for prediction in body["predictions"]]
    status, body = post_image(service.url, negative_photos()["cat"], "image/png", filename="cat.png")
    assert status == 200 and body["predictions"][0]["verdict"] == "neither", body
    verdicts.append("neither")
    assert request("POST", service.url + "/predict", b"hello", {"Content-Type": "text/plain"})[0] == 415
    assert get(service.url + "/no/such/page")[0] == 404
    return verdicts, scrape(service.url)


def test_metrics_count_requests_by_route_template_and_status(service, traffic):
    _, families = traffic
    requests_total = PREFIX + "http_requests_total"
    assert value(families, requests_total, method="POST", endpoint="/predict", status="200") == 3
    assert value(families, requests_total, method="POST", endpoint="/predict", status="415") == 1
    assert value(families, requests_total, method="GET", endpoint="unmatched", status="404") == 1
    assert value(families, requests_total, method="GET", endpoint="/", status="200") >= 1  # the wait until ready
    endpoints = {sample.labels["endpoint"] for sample in families[PREFIX + "http_requests"].samples}
    assert endpoints <= {"/", "/predict", "unmatched"}, endpoints  # templates, never raw paths or queries
    duration = PREFIX + "http_request_duration_seconds"
    assert families[duration].type == "histogram"
    # ServiceProcess's wait until ready may have sent one prediction while loading (a 503): counted too.
    predicts = sum(
        sample.value
        for sample in families[PREFIX + "http_requests"].samples
        if sample.name == requests_total and sample.labels["endpoint"] == "/predict"
    )
    assert predicts == 4 + (service.predict_while_loading is not None)
    assert value(families, duration + "_count", method="POST", endpoint="/predict") == predicts
    assert value(families, PREFIX + "http_requests_in_flight") == 1  # the scrape itself
    assert families[PREFIX + "requests_refused"].type == "counter"  # nothing refused yet: no samples


def test_metrics_count_images_verdicts_and_inferences(traffic):
    verdicts, families = traffic
    for verdict in set(verdicts) | {"muffin", "chihuahua"}:
        assert value(families, PREFIX + "verdicts_total", verdict=verdict) == verdicts.count(verdict), verdict
    assert value(families, PREFIX + "verdicts_total", verdict="neither") >= 1
    images = PREFIX + "images_per_request"
    assert (value(families, images + "_count"), value(families, images + "_sum")) == (3, 4)
    inference = PREFIX + "inference_duration_seconds"
    assert families[inference].type == "histogram" and value(families, inference + "_count") == 3
    assert value(families, inference + "_sum") > 0


def test_model_info_names_what_the_health_check_answers(service, traffic):
    _, families = traffic
    [sample] = families[PREFIX + "model_info"].samples  # the text format shows an info as a gauge
    assert sample.name == PREFIX + "model_info" and sample.value == 1
    health = get(service.url + "/")[1]
    assert sample.labels == {
        "backbone": health["backbone"],
        "engine": health["engine"],
        "model_version": health["model_version"],
        "model_sha256": health["model_sha256"],
        "app_version": health["app_version"],
    }


def test_the_request_id_is_echoed_and_in_the_json_log_line(service, traffic):
    response = requests.post(
        service.url + "/predict?filename=m.jpg",
        data=photo("muffin"),
        headers={"Content-Type": "image/jpeg", "X-Request-ID": REQUEST_ID},
        timeout=60,
    )
    assert response.status_code == 200 and response.headers["X-Request-ID"] == REQUEST_ID
    verdict = response.json()["predictions"][0]["verdict"]
    generated = {requests.get(service.url + "/livez", timeout=60).headers["X-Request-ID"] for _ in range(2)}
    assert len(generated) == 2 and REQUEST_ID not in generated  # a new id for each request that sent none
    unusable = requests.get(service.url + "/livez", headers={"X-Request-ID": "x" * 500}, timeout=60)
    assert unusable.headers["X-Request-ID"] != "x" * 500

    stopped_at = len(log_lines(service))  # the line is written before the answer ends: it is there now
    [line] = [line for line in log_lines(service)[:stopped_at] if line.get("request_id") == REQUEST_ID]
    assert line["message"] == "request" and line["level"] == "info"
    assert (line["method"], line["path"], line["endpoint"], line["status"]) == ("POST", "/predict", "/predict", 200)
    assert line["images"] == 1 and line["verdicts"] == {verdict: 1}
    assert isinstance(line["duration_seconds"], float) and "time" in line
    refused = [line for line in log_lines(service) if line.get("status") == 415]
    assert refused and refused[0]["images"] == 0 and refused[0]["verdicts"] == {}
    assert {line["request_id"] for line in log_lines(service) if line.get("path") == "/livez"} >= generated
