"""The page's bound on predictions at once across sessions: threads (as Streamlit's sessions are) take the slots."""

import threading

import pytest

from muffin_v_chihuahua import cpus, prediction_slots
from muffin_v_chihuahua.environment import SettingError
from muffin_v_chihuahua.prediction_slots import Busy, PredictionSlots

HANG = 60  # seconds: only so that a broken bound fails the test instead of hanging it


def hold_every_slot(slots: PredictionSlots) -> tuple[list[threading.Thread], threading.Event]:
    """`slots.size` threads, each inside held() until the event is set; returns once all are inside."""
    inside = threading.Barrier(slots.size + 1)
    leave = threading.Event()

    def hold() -> None:
        with slots.held(wait=HANG):
            inside.wait(HANG)
            leave.wait(HANG)

    threads = [threading.Thread(target=hold) for _ in range(slots.size)]
    for thread in threads:
        thread.start()
    inside.wait(HANG)
    return threads, leave


def test_when_every_slot_is_taken_the_next_waits_then_is_told_busy_and_a_freed_slot_lets_it_in():
    slots = PredictionSlots(2)
    threads, leave = hold_every_slot(slots)
    with pytest.raises(Busy, match=r"busy with other visitors' photos \(2 at once\): try again"), slots.held(wait=0.1):
        pass
    waiting_done = threading.Event()

    def wait_for_a_slot() -> None:
        with slots.held(wait=HANG):
            waiting_done.set()

    waiter = threading.Thread(target=wait_for_a_slot)
    waiter.start()
    assert not waiting_done.is_set()  # it waits: both slots are still held
    leave.set()
    waiter.join(HANG)
    assert waiting_done.is_set()
    for thread in threads:
        thread.join(HANG)
    with slots.held(wait=0):  # every slot free again: a Busy or an error inside releases its slot too
        pass


def test_many_threads_never_run_more_than_the_bound_at_once():
    slots = PredictionSlots(3)
    running, most = 0, 0
    lock = threading.Lock()
    together = threading.Barrier(3)  # each holder waits for two others: the bound is reached, every round

    def guarded() -> None:
        nonlocal running, most
        with slots.held(wait=HANG):
            with lock:
                running += 1
                most = max(most, running)
            together.wait(HANG)
            with lock:
                running -= 1

    threads = [threading.Thread(target=guarded) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    assert most == 3 and running == 0


def test_an_error_inside_releases_the_slot():
    slots = PredictionSlots(1)
    with pytest.raises(RuntimeError, match="failed inside"), slots.held(wait=0):
        raise RuntimeError("failed inside")
    with slots.held(wait=0):
        pass


def test_the_environment_sizes_the_process_wide_slots(monkeypatch):
    monkeypatch.delenv(prediction_slots.SLOTS_VARIABLE, raising=False)
    monkeypatch.delenv(prediction_slots.WAIT_VARIABLE, raising=False)
    slots, wait = prediction_slots.from_environment()
    assert slots.size == cpus.usable() and wait == prediction_slots.WAIT_SECONDS
    assert slots is prediction_slots.from_environment()[0]  # one semaphore for every session
    monkeypatch.setenv(prediction_slots.SLOTS_VARIABLE, "5")
    monkeypatch.setenv(prediction_slots.WAIT_VARIABLE, "2.5")
    slots, wait = prediction_slots.from_environment()
    assert (slots.size, wait) == (5, 2.5) and slots is prediction_slots.shared(5)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        (prediction_slots.SLOTS_VARIABLE, "many", "'many' is not a valid int"),
        (prediction_slots.SLOTS_VARIABLE, "0", "must be at least 1"),
        (prediction_slots.WAIT_VARIABLE, "-1", "must not be negative"),
        (prediction_slots.WAIT_VARIABLE, "nan", "must not be negative"),
    ],
)
def test_a_setting_it_cannot_use_is_refused_naming_it(monkeypatch, variable, value, problem):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError, match=f"^{variable}=.*{problem}"):
        prediction_slots.from_environment()
