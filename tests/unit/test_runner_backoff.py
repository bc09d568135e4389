"""Backoff schedule of the sync loop: grows exponentially from the initial delay and caps."""

from __future__ import annotations

import pytest

from agent.runner.backoff import BackoffPolicy


def test_default_schedule_grows_and_caps_at_five_minutes() -> None:
    assert BackoffPolicy().schedule(9) == [5, 10, 20, 40, 80, 160, 300, 300, 300]


def test_no_failure_means_no_delay() -> None:
    assert BackoffPolicy().delay(0) == 0.0


def test_huge_failure_counts_stay_finite_and_capped() -> None:
    assert BackoffPolicy(initial_s=1, factor=10, max_s=60).delay(10_000) == 60.0


def test_delays_never_decrease() -> None:
    delays = BackoffPolicy(initial_s=0.5, factor=3, max_s=100).schedule(20)
    assert delays == sorted(delays) and delays[-1] == 100


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"max_s": 1, "initial_s": 2},
                                    {"factor": 0.5}])
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid backoff policy"):
        BackoffPolicy(**kwargs)
