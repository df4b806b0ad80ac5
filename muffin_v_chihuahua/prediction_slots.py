"""How many of the page's predictions run at once across all its browser sessions: a bounded number, as the
service bounds its workers; a session that finds them all taken waits a bounded time, then is told to try again.

Streamlit runs each session's script in its own thread, so without a bound every visitor's photos would be
decoded and predicted at once, the CPUs shared ever thinner and memory growing with the crowd.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

from muffin_v_chihuahua import cpus
from muffin_v_chihuahua.environment import SettingError, setting

# How many predictions may run at once (default: the CPUs this process may use, as the service's workers).
SLOTS_VARIABLE = "MUFFIN_V_CHIHUAHUA_PAGE_PREDICTIONS"
# How many seconds a session waits for a free slot before it says "busy".
WAIT_VARIABLE = "MUFFIN_V_CHIHUAHUA_PAGE_WAIT_SECONDS"
WAIT_SECONDS = 30.0


class Busy(RuntimeError):
    """Every slot stayed taken for the whole wait; the message says so, for a person."""


class PredictionSlots:
    def __init__(self, size: int) -> None:
        self.size = size
        self._semaphore = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def held(self, wait: float) -> Iterator[None]:
        """One slot for the with block, once one is free within `wait` seconds; else Busy."""
        if not self._semaphore.acquire(timeout=wait):
            raise Busy(f"the model is busy with other visitors' photos ({self.size} at once): try again in a moment")
        try:
            yield
        finally:
            self._semaphore.release()


@functools.cache
def shared(size: int) -> PredictionSlots:
    """The process's slots. A module's state lives as long as the process (Streamlit imports it once and reruns
    only the page script), and unlike st.cache_resource no "clear cache" can swap a semaphore sessions still hold."""
    return PredictionSlots(size)


def from_environment() -> tuple[PredictionSlots, float]:
    """The process's slots and how long to wait for one, as the environment sets them."""
    size = setting(SLOTS_VARIABLE, int, cpus.usable())
    wait = setting(WAIT_VARIABLE, float, WAIT_SECONDS)
    if size < 1:
        raise SettingError(f"{SLOTS_VARIABLE}={size} must be at least 1")
    if not wait >= 0:  # also refuses NaN
        raise SettingError(f"{WAIT_VARIABLE}={wait} must not be negative")
    return shared(size), wait
