"""Admission (muffin_v_chihuahua/service/admission.py): the request bytes held at once, bounded. The budget's
arithmetic, reservations, and in process through the app with a small budget: a request that declares more is
refused before it is read, a chunked one once its bytes pass the budget, both 503 busy with Retry-After in the
service's JSON error shape, counted as refused; uvicorn's own refusal past its connection limit in the same shape.
Against the real server, with clients that send before they read: test_service.py, test_service_draining.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from muffin_v_chihuahua.service.admission import QUEUED, Admission, Overloaded, budget, refusing_every_request
from muffin_v_chihuahua.service.settings import Settings
from tests.stub_classifier import GREY, client

KB = 1024
REFUSED_FOR_MEMORY = 'muffin_v_chihuahua_requests_refused_total{reason="memory budget"}'


def test_the_default_budget_is_the_largest_requests_the_workers_take_plus_the_queued():
    assert budget(100, 2) == (2 + QUEUED) * 100


def test_a_reservation_fits_or_is_refused_and_counted_and_a_release_frees_it():
    refusals = []
    admission = Admission(100, lambda: refusals.append(1))
    assert admission.reserve(60) and not admission.reserve(41) and refusals == [1]
    assert admission.held == 60 and "0 of 0 MB of requests held" in str(admission.overloaded())
    admission.release(60)
    assert admission.reserve(100) and admission.held == 100


def assert_busy(answer, why: str) -> None:
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1", answer.text
    body = answer.json()
    assert body["detail"] == f"the service is busy ({why}): retry later", body
    assert body["errors"] == [{"file": None, "error": body["detail"]}]


@pytest.fixture
def small_budget():
    """The app with a budget of 50 KB."""
    with client(Settings(engine="onnx", max_held_mb=50 / KB)) as service:
        yield service


def test_a_request_declaring_more_than_the_budget_is_refused_before_it_is_read(small_budget):
    answer = small_budget.post("/predict", content=bytes(60 * KB), headers={"Content-Type": "image/png"})
    assert_busy(answer, "0 of 0 MB of requests held")
    assert REFUSED_FOR_MEMORY + " 1.0" in small_budget.get("/metrics").text


def test_a_chunked_request_is_refused_once_its_bytes_pass_the_budget(small_budget):
    chunks = (bytes(10 * KB) for _ in range(6))
    answer = small_budget.post("/predict", content=chunks, headers={"Content-Type": "image/png"})
    assert_busy(answer, "0 of 0 MB of requests held")


def test_a_request_within_the_budget_is_answered_and_its_bytes_released(small_budget):
    for _ in range(3):  # more than the budget in all: each request's bytes are given back
        answer = small_budget.post("/predict", content=GREY, headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text


def test_past_uvicorn_s_connection_limit_every_request_is_503_busy_and_closes_the_connection():
    refusals = []
    answer = TestClient(refusing_every_request(lambda: refusals.append(1))).get("/anything")  # no lifespan: uvicorn's
    assert_busy(answer, "too many connections or requests at once")
    assert answer.headers["Connection"] == "close" and refusals == [1]


def test_overloaded_is_a_503_with_retry_after_and_the_headers_given():
    refusal = Overloaded("why", {"Connection": "close"})
    assert refusal.status == 503 and refusal.headers == {"Retry-After": "1", "Connection": "close"}
