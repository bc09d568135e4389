"""Pure status model of the agent: what `/status` shows and what the loop decides from.

`agent.runner.loop` folds every `SyncResult` (contract C4) into a new frozen `AgentStatus` with
`record_result`; `agent.runner.server` serves `to_dict(status)` as JSON. No I/O and no clock
here: the caller passes `now`, so every transition is unit-tested.

Result vocabulary: `applied` / `unchanged` (cluster equals the commit), `partial` (applied but
what a conflict kept back), `invalid` (specs do not validate), `failed`. What happens next is the
result's `disposition` (agent.errors.Disposition, from the error's type): `stall` until the
commit changes (`invalid`, a `SignatureInvalid` failure: retrying the same commit cannot help),
`retry` with backoff (other failures), `report` (partial: neither).

Per pipeline, /status shows the sync status and health of `agent.plan.health` (the same function
`pachsync status` and the metrics use), judged after every run by the runner (`record_health`),
next to the action the last run took.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agent.errors import Disposition
from agent.plan.health import Health, StatusReport, Sync
from agent.plan.health import to_dict as status_dict
from agent.runner.backoff import BackoffPolicy

OK_RESULTS = frozenset({"applied", "unchanged"})
# Applied except what a conflict kept back: the commit counts as applied (the rest of it is in
# the cluster), but not as a success; neither retried with backoff (a retry cannot resolve a
# conflict) nor stalled (the other owner may let go): the interval checks again.
APPLIED_RESULTS = OK_RESULTS | {"partial"}
HISTORY = 10


class ResultLike(Protocol):
    """The fields of agent.sync.SyncResult (C4) the runner reads."""

    @property
    def commit(self) -> str | None: ...
    @property
    def result(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def actions(self) -> dict[str, str]: ...
    @property
    def errors(self) -> tuple[str, ...]: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def disposition(self) -> Disposition | None: ...
    @property
    def drift_detected(self) -> int: ...
    @property
    def out_of_sync(self) -> int: ...
    @property
    def conflicts(self) -> int: ...


@dataclass(frozen=True)
class Attempt:
    """One finished run as recorded in /status."""

    commit: str | None
    result: str
    trigger: str
    started_at: float
    duration_s: float
    error_kind: str | None = None
    errors: tuple[str, ...] = ()
    actions: tuple[tuple[str, str], ...] = ()
    drift_detected: int = 0
    out_of_sync: int = 0


@dataclass(frozen=True)
class PipelineState:
    """Per-pipeline line of /status: the last action taken and the resulting state."""

    action: str
    state: str  # Synced | Drifted | OutOfSync | Pruned | Conflict | Unknown
    commit: str | None


@dataclass(frozen=True)
class AgentStatus:
    """Everything the agent knows about its own progress; replaced, never mutated."""

    source: str
    branch: str
    specs_path: str = "specs"
    ready: bool = False
    runs: int = 0
    last_attempt: Attempt | None = None
    last_applied_commit: str | None = None
    last_success_at: float | None = None
    consecutive_failures: int = 0
    backoff_s: float = 0.0
    stalled_commit: str | None = None  # a commit known bad: not re-run until the head moves
    stalled_reason: str | None = None
    stalled_checks: int = 0  # runs that found the head still at the stalled commit
    last_checked_at: float | None = None
    next_run_at: float | None = None
    pipelines: tuple[tuple[str, PipelineState], ...] = field(default=())
    history: tuple[Attempt, ...] = ()  # the last HISTORY runs, newest first
    health: StatusReport | None = None  # sync and health of every pipeline, after the last run
    health_checked_at: float | None = None  # when `health` was last judged successfully
    health_error: str | None = None  # why the last attempt to judge it failed (None: it did not)


def is_stall(result: ResultLike) -> bool:
    """A result the same commit can never improve on: wait for a new commit."""
    return result.disposition == Disposition.STALL


def is_failure(result: ResultLike) -> bool:
    """A result worth retrying soon with backoff (cluster or git trouble)."""
    return result.disposition == Disposition.RETRY


def exit_code(result: ResultLike) -> int:
    """`agent --once` exit code: 0 applied/unchanged, 1 invalid or badly signed, 2 failed or
    partial (a conflict kept something back)."""
    if result.result in OK_RESULTS:
        return 0
    return 1 if is_stall(result) else 2


# Actions (agent.plan labels) whose outcome is not simply "now equal to git".
_ACTION_STATES = {
    "delete": "Pruned",
    "orphan": "OutOfSync",  # managed, gone from git, kept because --prune is off
    "conflict": "Conflict",  # git wants a name the cluster gives to an unmanaged pipeline
}


def _pipeline_states(prev: tuple[tuple[str, PipelineState], ...], result: ResultLike,
                     self_heal: bool) -> tuple[tuple[str, PipelineState], ...]:
    if not result.actions:
        return prev  # nothing planned (fetch failed, specs invalid): cluster kept its state
    ok = result.result in APPLIED_RESULTS
    out = []
    for name, action in sorted(result.actions.items()):
        if not ok:
            state = "Unknown"  # the run failed part-way: the next run recomputes from live
        elif action == "drift":
            state = "Synced" if self_heal else "Drifted"
        else:
            state = _ACTION_STATES.get(action, "Synced")
        out.append((name, PipelineState(action=action, state=state, commit=result.commit)))
    return tuple(out)


def record_result(status: AgentStatus, result: ResultLike, *, trigger: str, now: float,
                  policy: BackoffPolicy, self_heal: bool = True) -> AgentStatus:
    """Fold one finished sync into the status: backoff, stall, last applied, pipelines."""
    attempt = Attempt(
        commit=result.commit, result=result.result, trigger=trigger,
        started_at=result.started_at, duration_s=result.duration_s,
        error_kind=result.error_kind, errors=tuple(result.errors),
        actions=tuple(sorted(result.actions.items())),
        drift_detected=result.drift_detected, out_of_sync=result.out_of_sync,
    )
    failures = status.consecutive_failures + 1 if is_failure(result) else 0
    stalled, reason = status.stalled_commit, status.stalled_reason
    if is_stall(result) and result.commit:
        stalled, reason = result.commit, "; ".join(result.errors) or result.error_kind
    elif result.result in OK_RESULTS:
        stalled, reason = None, None
    ok = result.result in OK_RESULTS
    applied = result.result in APPLIED_RESULTS
    return replace(
        status, ready=True, runs=status.runs + 1, last_attempt=attempt,
        last_applied_commit=result.commit if applied else status.last_applied_commit,
        last_success_at=now if ok else status.last_success_at,
        consecutive_failures=failures, backoff_s=policy.delay(failures),
        stalled_commit=stalled, stalled_reason=reason, stalled_checks=0, last_checked_at=now,
        pipelines=_pipeline_states(status.pipelines, result, self_heal),
        history=(attempt, *status.history)[:HISTORY],
    )


def record_health(status: AgentStatus, report: StatusReport | None, error: str | None,
                  now: float) -> AgentStatus:
    """Fold one health check: a new report, or an error that keeps the last known report."""
    if report is None:
        return replace(status, health_error=error) if error else status
    return replace(status, health=report, health_checked_at=now, health_error=None)


def record_stalled_check(status: AgentStatus, now: float) -> AgentStatus:
    """A run found the head still at the stalled commit: nothing was applied, nothing failed."""
    return replace(status, ready=True, stalled_checks=status.stalled_checks + 1,
                   last_checked_at=now, consecutive_failures=0, backoff_s=0.0)


def to_dict(status: AgentStatus) -> dict[str, Any]:
    """The JSON document of GET /status."""
    last = status.last_attempt
    return {
        "source": status.source,
        "branch": status.branch,
        "specsPath": status.specs_path,
        "ready": status.ready,
        "runs": status.runs,
        "lastAttempted": None if last is None else {
            "commit": last.commit, "result": last.result, "trigger": last.trigger,
            "startedAt": last.started_at, "durationSeconds": round(last.duration_s, 3),
            "errorKind": last.error_kind, "errors": list(last.errors),
            "driftDetected": last.drift_detected, "outOfSync": last.out_of_sync,
        },
        "lastApplied": {"commit": status.last_applied_commit, "at": status.last_success_at},
        "stalled": None if status.stalled_commit is None else {
            "commit": status.stalled_commit, "reason": status.stalled_reason,
            "checksSince": status.stalled_checks,
            "hint": "fix the specs (or the signature) and push a new commit",
        },
        "backoff": {"consecutiveFailures": status.consecutive_failures,
                    "delaySeconds": status.backoff_s},
        "lastCheckedAt": status.last_checked_at,
        "nextRunAt": status.next_run_at,
        "pipelines": _pipelines(status),
        "health": _health(status),
        "history": [{"commit": a.commit, "result": a.result, "trigger": a.trigger,
                     "startedAt": a.started_at, "durationSeconds": round(a.duration_s, 3),
                     "errorKind": a.error_kind} for a in status.history],
    }


def _pipelines(status: AgentStatus) -> dict[str, dict[str, Any]]:
    """Per pipeline: the last run's action, and (once judged) sync and health with their facts.
    `state` is kept for older readers: the sync status when known."""
    out = {name: {"action": p.action, "state": p.state, "commit": p.commit}
           for name, p in status.pipelines}
    if status.health is None:
        return out
    judged = {}
    for ps in status.health.pipelines:
        doc = status_dict(ps)
        last = out.get(ps.name)
        doc.pop("name")
        doc["plan_action"] = doc.pop("action")
        doc["pipeline_state"] = doc.pop("state")
        doc.update(action=last["action"] if last else None,
                   commit=last["commit"] if last else None, state=str(ps.sync))
        judged[ps.name] = doc
    # Pipelines the last run touched that are gone now (pruned) keep their action line.
    return {**{n: d for n, d in out.items() if n not in judged}, **judged}


def _health(status: AgentStatus) -> dict[str, Any] | None:
    report = status.health
    if report is None and status.health_error is None:
        return None
    rows = report.pipelines if report is not None else ()
    return {
        "checkedAt": status.health_checked_at, "error": status.health_error,
        "sourceId": report.source_id if report else None,
        "commit": report.commit if report else None,
        "sync": {str(v): sum(1 for r in rows if r.sync == v) for v in Sync},
        "health": {str(v): sum(1 for r in rows if r.health == v) for v in Health},
    }
