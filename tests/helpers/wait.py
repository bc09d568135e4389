"""The one way tests wait for something that happens in another thread or process: poll a probe
until it says yes. The timeout only guards a hang (a busy machine must never fail a test that
would pass), so it is generous and never an expectation about speed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
HANG = 120.0  # seconds


def wait_for(probe: Callable[[], T], what: str | Callable[[], str], timeout: float = HANG,
             interval: float = 0.05) -> T:
    """Call `probe()` every `interval` seconds until it returns something truthy, and return
    that. After `timeout` seconds the test fails with "timed out waiting for WHAT" (`what` may
    be a callable, to describe the last state seen)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)
    return value
