"""Which commit status each run and health check means, posted once per state change (a
new state of a (commit, context); a new message in the same state posts nothing).

Called by `agent.notify.notifier` (from the runner's hooks). PURE rules plus one small memory
(`CommitStatuses`: the last state posted per (commit, context), bounded) and no I/O, so every
rule is unit-tested directly.

Context `sync`: `pending` the first time a commit is seen (never again: a retry after a failure
keeps `failed` until it succeeds, so a failing commit never makes a pending/failed loop),
`succeeded` when applied or already in sync, `failed` with the first error line when invalid or
failed, and when partial (pipelines in conflict skipped) naming them.

Context `health`: for the newest commit a run applied, judged on every health check from the
pipelines that run changed (created, updated, adopted, reverted): `failed` naming the Degraded
ones and their job reasons, `succeeded` when all are Healthy (with a job of their version, or
none after `SETTLE_CHECKS` more checks: an update without reprocess may start no job), else
`pending`. Messages name pipelines, never datum
counts, so a running job does not post a new status on every tick.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from agent.plan.health import Health, PipelineStatus, StatusReport

SYNC, HEALTH = "sync", "health"
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
CHANGED_ACTIONS = frozenset({"create", "update", "update+reprocess", "drift", "adopt"})
NAMES_SHOWN = 10  # pipelines named in one message; the event's `pipelines` holds them all
REMEMBERED = 256  # (commit, context) pairs remembered
SETTLE_CHECKS = 2  # health checks after an apply before "Healthy, no job" counts as done


class RunLike(Protocol):
    """What a finished run tells us (agent.sync.SyncResult, agent.runner.loop.CrashResult)."""

    @property
    def commit(self) -> str | None: ...
    @property
    def result(self) -> str: ...
    @property
    def errors(self) -> tuple[str, ...]: ...
    @property
    def actions(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class PipelineNote:
    """One pipeline as an event shows it."""

    name: str
    sync: str
    health: str
    reason: str


@dataclass(frozen=True)
class Event:
    """One state change of one (commit, context)."""

    commit: str
    context: str  # SYNC | HEALTH
    state: str  # PENDING | SUCCEEDED | FAILED
    message: str
    pipelines: tuple[PipelineNote, ...] = ()


def _names(names: Iterable[str]) -> str:
    listed = list(names)
    more = len(listed) - NAMES_SHOWN
    return ", ".join(listed[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _first_line(errors: tuple[str, ...]) -> str:
    text = next((e for e in errors if e.strip()), "no error text")
    return text.strip().splitlines()[0]


def changed_pipelines(actions: Mapping[str, str]) -> tuple[str, ...]:
    """Pipelines a run created or updated (whose jobs its health waits for), sorted."""
    return tuple(sorted(n for n, a in actions.items() if a in CHANGED_ACTIONS))


def sync_finished(run: RunLike) -> Event | None:
    """The `sync` status a finished run means, or None (no commit fetched, a dry run)."""
    if run.commit is None:
        return None
    changed = changed_pipelines(run.actions)
    if run.result in ("applied", "unchanged"):
        text = f"applied: {_names(changed)}" if changed else "in sync: nothing to change"
        return Event(run.commit, SYNC, SUCCEEDED, text)
    if run.result == "invalid":
        return Event(run.commit, SYNC, FAILED, f"invalid: {_first_line(run.errors)}")
    if run.result == "partial":
        skipped = sorted(n for n, a in run.actions.items() if a == "conflict")
        return Event(run.commit, SYNC, FAILED, f"partial: conflict, skipped {_names(skipped)}: "
                     f"{_first_line(run.errors)}")
    if run.result == "failed":
        return Event(run.commit, SYNC, FAILED, f"failed: {_first_line(run.errors)}")
    return None


def _note(s: PipelineStatus) -> PipelineNote:
    return PipelineNote(s.name, str(s.sync), str(s.health), s.reason)


def health_of(commit: str, pipelines: tuple[str, ...], report: StatusReport,
              settled: bool = False) -> Event:
    """The `health` status of `commit` whose run changed `pipelines`, from `report`. A Healthy
    pipeline with no job of its version counts only once `settled` (the engine creates jobs
    after the apply returns, so right after it "no job" may mean "not yet")."""
    by_name = {s.name: s for s in report.pipelines}
    statuses = [by_name[n] for n in pipelines if n in by_name]
    notes = tuple(_note(s) for s in statuses)
    if not pipelines:
        return Event(commit, HEALTH, SUCCEEDED, "no pipeline changed by this commit")
    degraded = [s for s in statuses if s.health == Health.DEGRADED]
    if degraded:
        text = "; ".join(f"{s.name}: {s.health_reason}" for s in degraded[:NAMES_SHOWN])
        return Event(commit, HEALTH, FAILED, f"Degraded: {text}", notes)
    healthy = {s.name for s in statuses
               if s.health == Health.HEALTHY and (s.job is not None or settled)}
    if len(healthy) == len(pipelines):
        return Event(commit, HEALTH, SUCCEEDED, f"Healthy: {_names(pipelines)}", notes)
    waiting = [n for n in pipelines if n not in healthy]
    return Event(commit, HEALTH, PENDING, f"jobs running: {_names(waiting)}", notes)


class CommitStatuses:
    """The last state posted per (commit, context); turns runs into the events to post."""

    def __init__(self, remembered: int = REMEMBERED, settle_checks: int = SETTLE_CHECKS) -> None:
        self._last: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        self._remembered, self._settle_checks = remembered, settle_checks
        self._health: tuple[str, tuple[str, ...]] | None = None  # (commit, changed pipelines)
        self._checks = 0  # health checks of that commit so far

    def started(self, commit: str) -> list[Event]:
        """A run is about to plan `commit`: pending, the first time only."""
        if (commit, SYNC) in self._last:
            return []
        return self._changed([Event(commit, SYNC, PENDING, "syncing")])

    def finished(self, run: RunLike | None, report: StatusReport | None) -> list[Event]:
        """A run ended and health was checked: its sync status, then the health status. `run`
        None: the head was a commit known bad (nothing new to say about it), health only."""
        events = []
        if run is not None and (sync := sync_finished(run)) is not None:
            events.append(sync)
        fresh = (run is not None and run.commit is not None
                 and run.result in ("applied", "partial")
                 and (self._health is None or self._health[0] != run.commit))
        if fresh and run is not None and run.commit is not None:
            # pending first, even when its jobs are done by the first check: the sequence a
            # reviewer sees is always pending -> succeeded/failed
            self._health, self._checks = (run.commit, changed_pipelines(run.actions)), 0
            events.append(Event(run.commit, HEALTH, PENDING, "waiting for jobs"))
        if self._health is not None and report is not None and report.commit == self._health[0]:
            self._checks += 1
            health = health_of(*self._health, report, self._checks > self._settle_checks)
            events.append(health)
            if health.state != PENDING:
                # the commit's own jobs have answered: jobs that later data starts are not of
                # its commit set, so they never reopen its status (no pending after succeeded)
                self._health = None
        return self._changed(events)

    def _changed(self, events: list[Event]) -> list[Event]:
        out = []
        for event in events:
            key = (event.commit, event.context)
            if self._last.get(key, ("",))[0] == event.state:
                continue  # one post per state, however its message changes
            self._last[key] = (event.state, event.message)
            self._last.move_to_end(key)
            while len(self._last) > self._remembered:
                self._last.popitem(last=False)
            out.append(event)
        return out
