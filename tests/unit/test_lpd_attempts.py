"""localpachd.attempts: the retry/err_cmd rule both datum paths follow, against a model of
Pachyderm 2.7's `Set.WithDatum` loop and `Datum.run`/`Datum.handleFailed` (datum.go)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localpachd.attempts import Tally, Verdict, after_failure, err_cmd_time


def pachyderm(tries: int, results: list[bool | None]) -> tuple[int, str]:
    """WithDatum's loop over attempts that all fail, err_cmd's result per attempt: how many
    attempts ran and the datum's final state (RECOVERED is set by any success, never unset)."""
    state, ran = "PROCESSED", 0
    for i in range(max(1, tries)):  # i = 0..numRetries
        ran += 1
        if results[i] is True:
            state = "RECOVERED"
        if i == max(1, tries) - 1:
            return ran, "RECOVERED" if state == "RECOVERED" else "FAILED"
    raise AssertionError("unreachable")


def run(tries: int, results: list[bool | None]) -> tuple[int, Verdict, list[Verdict]]:
    tally, seen = Tally(tries), []
    while tally.verdict is Verdict.RETRY:
        verdict, tally = after_failure(tally, results[tally.failed])
        seen.append(verdict)
    return tally.failed, tally.verdict, seen


@pytest.mark.parametrize(
    ("tries", "results", "verdicts"),
    [
        (1, [None], ["failed"]),
        (1, [True], ["recovered"]),
        (1, [False], ["failed"]),
        (0, [True], ["recovered"]),  # datum_tries 0 is one attempt
        (3, [True, False, False], ["retry", "retry", "recovered"]),
        (3, [False, True, False], ["retry", "retry", "recovered"]),
        (3, [False, False, True], ["retry", "retry", "recovered"]),
        (3, [False, False, False], ["retry", "retry", "failed"]),
        (2, [None, True], ["retry", "recovered"]),  # an output failure runs no err_cmd
    ],
)
def test_examples(tries: int, results: list[bool | None], verdicts: list[str]) -> None:
    assert run(tries, results)[2] == verdicts


def test_a_recovery_does_not_stop_the_retries() -> None:
    verdict, tally = after_failure(Tally(3), True)
    assert verdict is Verdict.RETRY and tally == Tally(3, 1, True) and tally.attempt == 2


@pytest.mark.fuzz
@given(st.integers(0, 6), st.lists(st.sampled_from([True, False, None]), min_size=6, max_size=6))
def test_matches_pachyderms_loop(tries: int, results: list[bool | None]) -> None:
    failed, final, seen = run(tries, results)
    assert (failed, final.name) == pachyderm(tries, results)
    assert seen[:-1] == [Verdict.RETRY] * (failed - 1) and seen[-1] is final


def test_err_cmd_gets_what_is_left_of_the_datum_timeout() -> None:
    assert err_cmd_time(None, 100.0) is None
    assert err_cmd_time(3.0, 1.0) == 2.0
    left = err_cmd_time(3.0, float("inf"))
    assert left is not None and left <= 0  # a timed-out attempt: err_cmd cannot start
