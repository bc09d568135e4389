"""Retries and err_cmd as Pachyderm 2.7/2.8's worker decides them: the one rule both datum paths
follow (`localpachd.worker._attempts` per datum, `localpachd.batching.Slot._attempts`), so the
two cannot drift. Pure: no I/O, no clock.

What Pachyderm does (read in pachyderm/pachyderm v2.7.8 and v2.8.9, identical there):

- `src/server/worker/datum/datum.go: Set.WithDatum` runs a datum up to `numRetries + 1` times
  (`datum_tries`: `transform/worker.go: forEachDatum` sets `WithRetry(datum_tries - 1)`), each
  attempt on a freshly laid out datum (`Datum.withData`), and stops at the first success.
- `Datum.run` (inside that attempt's `/pfs`, under the attempt's `datum_timeout` context, see
  `Datum.Run`): when the user code fails, the recovery callback (err_cmd,
  `driver.RunUserErrorHandlingCode`) runs at once, after EVERY failed attempt; if it succeeds
  the datum's state becomes RECOVERED. The attempt's error is kept, so the datum is still
  retried; nothing ever sets the state back.
- `Datum.finish` / `Datum.handleFailed`, after the last failed attempt: RECOVERED counts in the
  job's `data_recovered` (the job does not fail), otherwise FAILED (`data_failed`, the job
  fails). A later successful attempt counts as processed and its output is uploaded.

So after attempt k of n failed, with err_cmd's result r (None: not run): retry while k < n;
after the last, RECOVERED if any err_cmd so far succeeded, else FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Verdict(StrEnum):
    RETRY = "retry"  # run (another) attempt
    RECOVERED = "recovered"  # no attempt left, but an err_cmd succeeded: the job does not fail
    FAILED = "failed"  # no attempt left and no err_cmd succeeded


@dataclass(frozen=True)
class Tally:
    """Where a datum's attempts stand: `tries` allowed (datum_tries, at least 1), `failed` so
    far, and whether an err_cmd succeeded after one of them (`recovered`, never undone)."""

    tries: int
    failed: int = 0
    recovered: bool = False

    @property
    def verdict(self) -> Verdict:
        if self.failed < max(1, self.tries):
            return Verdict.RETRY
        return Verdict.RECOVERED if self.recovered else Verdict.FAILED

    @property
    def attempt(self) -> int:
        """The number of the attempt that runs next (or that just ran, once it failed)."""
        return self.failed + 1


def after_failure(tally: Tally, err_cmd_ok: bool | None) -> tuple[Verdict, Tally]:
    """Attempt `tally.attempt` failed and err_cmd ran with result `err_cmd_ok` (None: the spec
    has no err_cmd, or it could not run): what happens next, and the new tally."""
    now = replace(tally, failed=tally.failed + 1, recovered=tally.recovered or err_cmd_ok is True)
    return now.verdict, now


def err_cmd_time(datum_timeout: float | None, used: float) -> float | None:
    """What err_cmd may run for after an attempt that took `used` seconds: it runs under the
    attempt's own datum_timeout (`Datum.run` passes it the same context), so only what is
    left of it; 0 or less means it cannot start. None: no datum_timeout."""
    if datum_timeout is None:
        return None
    return datum_timeout - used
