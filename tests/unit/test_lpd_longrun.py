"""localpachd.longrun.backoff (pure): no wait before a first start, doubling after each quick
exit, capped."""

from __future__ import annotations

from localpachd.longrun import BACKOFF_FIRST, BACKOFF_MAX, backoff


def test_backoff_doubles_from_the_first_quick_exit_and_is_capped() -> None:
    assert backoff(0) == 0.0
    assert [backoff(n) for n in (1, 2, 3)] == [BACKOFF_FIRST, 2 * BACKOFF_FIRST, 4 * BACKOFF_FIRST]
    assert backoff(1000) == BACKOFF_MAX
    assert all(backoff(n) <= backoff(n + 1) for n in range(100))
