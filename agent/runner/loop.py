"""The sync loop: one `sync_once` at a time, on an APScheduler interval and on webhook triggers.

Called by `agent.commands.agent` (which builds the options and the real `agent.sync.sync_once`)
and by tests with an injected sync function. Responsibilities:

- schedule: an interval job with jitter (max_instances=1, coalesce=True) plus a `webhook` job
  added on demand; every run takes one lock, and a run started after a trigger covers it, so a
  burst of webhooks costs at most one extra run;
- backoff: after a failed run a one-shot `retry` job runs at now + delay (exponential, capped,
  up to `BackoffPolicy.jitter` of it earlier at random) and interval runs before then are
  skipped, also one that was queued behind the run whose failure set the wait; every retry
  fetches the newest commit;
- stall: a commit known invalid (or badly signed) is not planned again. The runner passes a
  `verify` hook to sync_once that refuses exactly that sha after the fetch, so new commits are
  still fetched every interval and the first new one is synced at once;
- record: status (pure fold in `agent.runner.status`), metrics, one structured log line per run
  (naming the pipelines by action, not only counting them);
- health: after every run (stalled and failed ones too: jobs finish after the apply) every
  pipeline's sync and health are judged against the newest valid desired state the runner has
  seen (`agent.sync.refresh_status`, injectable), and /status and /metrics show that one report.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.errors import Disposition, PachsyncError
from agent.plan.health import StatusReport
from agent.runner.backoff import BackoffPolicy
from agent.runner.credentials import redact_url
from agent.runner.datalog import data_written, describe_data
from agent.runner.logs import LOGGER_NAME
from agent.runner.metrics import AgentMetrics
from agent.runner.status import (
    AgentStatus,
    ResultLike,
    record_health,
    record_result,
    record_stalled_check,
)

if TYPE_CHECKING:  # the runner calls sync_once through the injected SyncFn only
    from agent.sync import Prepared, SyncOptions

SyncFn = Callable[["SyncOptions"], ResultLike]  # agent.sync.sync_once (contract C4)
HealthFn = Callable[["SyncOptions", "Prepared"], StatusReport]  # agent.sync.refresh_status
HealthCheck = tuple[StatusReport | None, str | None]  # (report, or why there is none)
LOG_NAMES_MAX = 20  # pipeline names per action in a log message (the fields hold them all)
VerifyFn = Callable[[Path, str], None]


class NotifyHooks(Protocol):
    """agent.notify.notifier.Notifier: told when a commit is about to be planned and when a run
    and its health check ended (run None: a stalled check, health only); queues its posts,
    never blocks nor raises."""

    def started(self, commit: str) -> None: ...
    def finished(self, run: ResultLike | None, report: StatusReport | None) -> None: ...
    def wait_idle(self, timeout: float) -> bool: ...
    def stop(self) -> None: ...


JOB_ID = "sync"
WEBHOOK_JOB_ID = "webhook"
RETRY_JOB_ID = "retry"


class CommitStalled(PachsyncError):
    """Raised by the runner's verify hook: the head is the commit already known bad."""

    kind = "Stalled"
    disposition = Disposition.STALL


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    interval_s: float = 60.0
    jitter: float = 0.1  # fraction of the interval added at random to each run
    backoff: BackoffPolicy = BackoffPolicy()
    self_heal: bool = True


@dataclasses.dataclass(frozen=True)
class CrashResult:
    """Stands in for a SyncResult when sync_once raised (it should not): counted as failed."""

    commit: str | None
    result: str
    started_at: float
    duration_s: float
    errors: tuple[str, ...]
    error_kind: str | None = PachsyncError.kind
    disposition: Disposition | None = PachsyncError.disposition  # a bug below: retry
    actions: dict[str, str] = dataclasses.field(default_factory=dict)
    drift_detected: int = 0
    out_of_sync: int = 0
    conflicts: int = 0


class _Gate:
    """The verify hook handed to sync_once: refuse the stalled sha, then check the signature."""

    def __init__(self, stalled: str | None, verify: VerifyFn | None,
                 notifier: NotifyHooks | None = None) -> None:
        self.stalled, self.verify, self.fired = stalled, verify, False
        self.notifier = notifier

    def __call__(self, repo_dir: Path, sha: str) -> None:
        if self.stalled is not None and sha == self.stalled:
            self.fired = True
            raise CommitStalled(f"commit {sha[:12]} is known invalid; waiting for a new commit")
        if self.notifier is not None:
            self.notifier.started(sha)  # commit status "sync pending" (queued, never blocks)
        if self.verify is not None:
            self.verify(repo_dir, sha)


class Runner:
    """Runs sync_once on a schedule and on demand, and keeps status and metrics."""

    def __init__(self, options: SyncOptions, sync_fn: SyncFn, *, config: RunnerConfig | None = None,
                 metrics: AgentMetrics | None = None, verify: VerifyFn | None = None,
                 secrets: Iterable[str] = (), clock: Callable[[], float] = time.time,
                 health_fn: HealthFn | None = None,
                 rand: Callable[[], float] = random.random,
                 notifier: NotifyHooks | None = None) -> None:
        self.options, self.config = options, config or RunnerConfig()
        self.notifier = notifier  # commit statuses and events (agent.notify), or None
        self._health_fn = health_fn  # None: agent.sync.refresh_status
        self._prepared: Prepared | None = None  # newest valid desired state seen by a run
        self.metrics = metrics or AgentMetrics(redact_url(options.source), options.branch)
        self._sync_fn, self._verify, self._clock = sync_fn, verify, clock
        self._rand = rand  # the backoff jitter's draw in [0, 1)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._log = logging.getLogger(f"{LOGGER_NAME}.runner")
        self._run_lock = threading.Lock()
        self._cond = threading.Condition()
        self._requests = 0  # trigger tickets handed out
        self._covered = 0  # every ticket <= this was covered by a run that already started
        self._status = AgentStatus(source=redact_url(options.source), branch=options.branch,
                                   specs_path=getattr(options, "specs_path", "specs"))
        self._scheduler: BackgroundScheduler | None = None
        self._retry_at: float | None = None  # backing off until then (interval runs skip)
        self._stopping = False

    # -- public API ---------------------------------------------------------------------------
    @property
    def status(self) -> AgentStatus:
        with self._cond:
            status = self._status
        scheduler = self._scheduler  # read once: stop() may clear it concurrently
        job = scheduler.get_job(JOB_ID) if scheduler is not None else None
        nxt = job.next_run_time.timestamp() if job and job.next_run_time else None
        if self._retry_at is not None and self._retry_at > time.time():
            nxt = self._retry_at
        return dataclasses.replace(status, next_run_at=nxt)

    def run_once(self, trigger: str = "manual") -> ResultLike | None:
        """Run one sync now in this thread (waits for a running one); None if coalesced."""
        return self._run(self._ticket(), trigger, scheduled=False)

    def start(self) -> None:
        """Start the interval schedule; the first run starts at once."""
        scheduler = BackgroundScheduler(timezone=UTC)
        jitter = self.config.jitter * self.config.interval_s
        scheduler.add_job(
            self._scheduled, IntervalTrigger(seconds=self.config.interval_s, jitter=jitter or None),
            id=JOB_ID, name="pachsync sync", max_instances=1, coalesce=True,
            misfire_grace_time=None, next_run_time=datetime.now(UTC))
        scheduler.start()
        self._scheduler = scheduler

    def trigger(self, reason: str) -> bool:
        """Ask for a sync at once (webhook). Returns False when the loop is not running."""
        scheduler = self._scheduler
        if scheduler is None:
            return False
        ticket = self._ticket()
        # One pending webhook run at most (replace_existing) besides a running one
        # (max_instances=2): a burst of pushes costs one extra run, never a queue.
        scheduler.add_job(
            self._run, args=[ticket, reason], id=WEBHOOK_JOB_ID, name="pachsync webhook sync",
            replace_existing=True, max_instances=2, misfire_grace_time=None)
        self._log.debug("sync triggered", extra={"fields": {"event": "trigger", "reason": reason}})
        return True

    def stop(self, wait: bool = True) -> None:
        """Stop scheduling; with wait, let a running sync finish first.

        APScheduler's own `shutdown(wait=True)` holds its job-store lock while joining the
        executor, and a finishing run touches the job store (retry job): so shut down without
        waiting and wait on our own run lock instead. Runs queued behind it return at once."""
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if wait:
            with self._run_lock:
                pass

    def wait_for(self, predicate: Callable[[AgentStatus], bool], timeout: float) -> bool:
        """Block until predicate(status) holds (tests, --once); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._status), timeout=timeout)

    # -- one run ------------------------------------------------------------------------------
    def _ticket(self) -> int:
        with self._cond:
            self._requests += 1
            return self._requests

    def _scheduled(self) -> None:
        if self._backing_off():
            return  # backing off: the retry job runs at retry_at, not the interval
        self._run(self._ticket(), "interval")

    def _backing_off(self) -> bool:
        return self._retry_at is not None and time.time() < self._retry_at

    def _retry(self) -> None:
        self._run(self._ticket(), "retry")

    def _run(self, ticket: int, trigger: str, scheduled: bool = True) -> ResultLike | None:
        with self._run_lock:
            with self._cond:
                if self._stopping and scheduled:
                    return None
                if ticket <= self._covered:
                    return None  # a run that started after this request already fetched
                if trigger == "interval" and self._backing_off():
                    return None  # queued behind a run whose failure set a new wait
                self._covered = self._requests
            return self._execute(trigger)

    def _execute(self, trigger: str) -> ResultLike:
        gate = _Gate(self._status.stalled_commit, self._verify, self.notifier)
        opts = dataclasses.replace(self.options, verify=gate)
        started = self._clock()
        try:
            result = self._sync_fn(opts)
        except Exception as exc:  # noqa: BLE001 - the loop must survive a bug below it
            self._log.exception("sync crashed")
            result = CrashResult(None, "failed", started, self._clock() - started,
                                 (f"{type(exc).__name__}: {exc}",))
        result = self._redacted(result)
        health = self._check_health(result)
        self._record(result, trigger, gate.fired, health)
        if self.notifier is not None:  # queued: never delays the next run
            self.notifier.finished(None if gate.fired else result, health[0])
        self._reschedule()
        return result

    def _check_health(self, result: ResultLike) -> HealthCheck:
        """Sync and health of every pipeline against this run's desired state, else the last
        one a run prepared (a stalled or unfetchable head keeps judging the last good commit).
        Nothing until a run has prepared one (a fake sync in tests never does)."""
        prepared = getattr(result, "prepared", None)
        if prepared is not None:
            self._prepared = prepared
        if self._prepared is None:
            return None, None
        check = self._health_fn or _default_health_fn()
        try:
            return check(self.options, self._prepared), None
        except PachsyncError as exc:
            return None, self._redact(exc.message)
        except Exception as exc:  # noqa: BLE001 - the loop must survive a bug below it
            self._log.exception("health check crashed")
            return None, self._redact(f"{type(exc).__name__}: {exc}")

    def _redacted(self, result: ResultLike) -> ResultLike:
        """Errors are shown on the unauthenticated /status: strip any secret from them."""
        errors = tuple(self._redact(e) for e in result.errors)
        if errors == tuple(result.errors) or not dataclasses.is_dataclass(result):
            return result
        return dataclasses.replace(result, errors=errors)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _record(self, result: ResultLike, trigger: str, stalled_check: bool,
                health: HealthCheck = (None, None)) -> None:
        now = self._clock()
        with self._cond:
            if stalled_check:
                self._status = record_stalled_check(self._status, now)
            else:
                self._status = record_result(self._status, result, trigger=trigger, now=now,
                                             policy=self.config.backoff,
                                             self_heal=self.config.self_heal)
            # In the same update as the run, so a reader woken below sees both together.
            self._status = record_health(self._status, *health, now)
            status = self._status
            # Set with the status, so a reader woken below already sees the retry time.
            self._retry_at = time.time() + self.config.backoff.with_jitter(
                status.backoff_s, self._rand()) if status.backoff_s > 0 else None
            self._cond.notify_all()
        stalled = status.stalled_commit is not None
        if health[0] is not None:
            self.metrics.observe_health(health[0])
        if stalled_check:
            self.metrics.observe_state(0, 0.0, stalled)
        else:
            self.metrics.observe_result(result, status.consecutive_failures, status.backoff_s,
                                        stalled, now)
        self._log_run(result, trigger, status, stalled_check)

    def _reschedule(self) -> None:
        """Set or clear the retry after this run. A separate one-shot job (not a change of the
        interval job's next run, which the scheduler thread may overwrite concurrently)."""
        scheduler = self._scheduler
        if scheduler is None or self._stopping:
            return
        try:
            if self._retry_at is not None:
                scheduler.add_job(
                    self._retry, "date", run_date=datetime.fromtimestamp(self._retry_at, UTC),
                    id=RETRY_JOB_ID, name="pachsync retry", replace_existing=True,
                    misfire_grace_time=None)
            elif scheduler.get_job(RETRY_JOB_ID) is not None:
                scheduler.remove_job(RETRY_JOB_ID)
        except (LookupError, RuntimeError):
            pass  # scheduler shutting down, or the retry job just started

    def _log_run(self, result: ResultLike, trigger: str, status: AgentStatus,
                 stalled_check: bool) -> None:
        counts = dict(Counter(result.actions.values()))
        outcome = "stalled" if stalled_check else result.result
        named = names_by_action(result.actions)
        fields: dict[str, Any] = {
            "event": "sync", "commit": result.commit, "result": outcome, "trigger": trigger,
            "duration_s": round(result.duration_s, 3), "counts": counts,
            "pipelines": named,
            "drift_detected": result.drift_detected, "out_of_sync": result.out_of_sync,
        }
        if stalled_check:
            fields["stalled_commit"] = status.stalled_commit
        elif result.error_kind:
            fields["error_kind"] = result.error_kind
            fields["errors"] = list(result.errors[:5])
        if status.backoff_s:
            fields["retry_in_s"] = status.backoff_s
        if data := data_written(result):
            fields["data"] = data
        level = {"applied": logging.INFO, "unchanged": logging.INFO, "invalid": logging.WARNING,
                 "partial": logging.WARNING, "stalled": logging.INFO}.get(outcome, logging.ERROR)
        self._log.log(level, f"sync {outcome}{describe_actions(named)}{describe_data(data)}",
                      extra={"fields": fields})


def _default_health_fn() -> HealthFn:
    from agent.sync import refresh_status

    return refresh_status


def names_by_action(actions: dict[str, str]) -> dict[str, list[str]]:
    """Pipeline names per action, every action but `unchanged` (both sorted)."""
    out: dict[str, list[str]] = {}
    for name, action in sorted(actions.items(), key=lambda item: (item[1], item[0])):
        if action != "unchanged":
            out.setdefault(action, []).append(name)
    return out


def describe_actions(named: dict[str, list[str]]) -> str:
    """`: create split, model; update+reprocess select` for a log message ("" if nothing)."""
    parts = []
    for action, names in named.items():
        more = len(names) - LOG_NAMES_MAX
        shown = ", ".join(names[:LOG_NAMES_MAX]) + (f" and {more} more" if more > 0 else "")
        parts.append(f"{action} {shown}")
    return (": " + "; ".join(parts)) if parts else ""
