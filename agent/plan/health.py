"""PURE sync status and health of every pipeline, from one function: `pipeline_statuses`.

`pachsync status` (agent.commands.status) and the agent's runner (GET /status and the
`pachsync_pipeline_sync` / `pachsync_pipeline_health` metrics) all show this function's answer,
computed by `agent.sync.pipeline_status_report` from a plan and freshly observed live state, so
they cannot disagree. No I/O here: the caller observes the cluster (with the newest job of each
pipeline) and plans.

Sync, as Argo CD's sync status, comes from the plan's action for the pipeline through one table
(`SYNC_OF_ACTION`); an action the table does not know reads as OutOfSync, never as Synced.
Without a plan (no specs at hand) it comes from the annotations alone: Synced, Drifted or
Unmanaged, and the reason says so.

Health, as Argo CD's health, comes from Pachyderm's pipeline state and the newest job of the
version the pipeline runs now (the applied version, `pachsync.io/applied-version`, unless
someone updated it since, which is drift). First match wins: no pipeline -> Missing; stopped or
paused -> Suspended; CRASHING or FAILURE -> Degraded (Pachyderm's reason); newest job FAILURE,
KILLED or UNRUNNABLE -> Degraded (the job's reason); a job CREATED/STARTING/RUNNING/EGRESSING/
FINISHING, or the pipeline STARTING/RESTARTING -> Progressing; any other pipeline state ->
Unknown; no job yet -> Healthy (nothing to run); job SUCCESS -> Healthy; else Unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.cluster.model import LiveJob, LivePipeline, LiveState
from agent.plan.diff import touched_by_others
from agent.plan.model import (
    CONFLICT,
    CREATE,
    DELETE,
    DRIFT,
    ORPHAN,
    UNCHANGED,
    UNMANAGED,
    UPDATE,
    PipelineChange,
    Plan,
)
from agent.plan.normalize import (
    ANN_APPLIED_VERSION,
    ANN_MANAGED_BY,
    ANN_SOURCE_COMMIT,
    annotations_of,
    normalize_spec,
    qualify,
    spec_hash,
)


class Sync(StrEnum):
    SYNCED = "Synced"  # the cluster equals git (or, without specs, what pachsync applied)
    OUT_OF_SYNC = "OutOfSync"  # git wants a change apply would make (create, update, adopt)
    DRIFTED = "Drifted"  # changed outside git since pachsync applied it
    ORPHAN = "Orphan"  # managed by this source, gone from git
    CONFLICT = "Conflict"  # git names it, but the name belongs to something else
    UNMANAGED = "Unmanaged"  # neither in git nor managed by this source


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    MISSING = "Missing"
    UNKNOWN = "Unknown"


# Plan actions (agent.plan.model) -> sync status. "adopt": a pipeline git names that nobody
# manages yet (taken over only with --adopt).
SYNC_OF_ACTION: Mapping[str, Sync] = {
    UNCHANGED: Sync.SYNCED, CREATE: Sync.OUT_OF_SYNC, UPDATE: Sync.OUT_OF_SYNC,
    "adopt": Sync.OUT_OF_SYNC, DRIFT: Sync.DRIFTED, ORPHAN: Sync.ORPHAN, DELETE: Sync.ORPHAN,
    CONFLICT: Sync.CONFLICT, UNMANAGED: Sync.UNMANAGED,
}
DEFAULT_SYNC = Sync.OUT_OF_SYNC  # an action this table does not know is never "Synced"

JOB_PROGRESSING = frozenset({"JOB_CREATED", "JOB_STARTING", "JOB_RUNNING", "JOB_EGRESSING",
                             "JOB_FINISHING"})
JOB_FAILED = frozenset({"JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE"})
PIPELINE_DEGRADED = frozenset({"PIPELINE_CRASHING", "PIPELINE_FAILURE"})
PIPELINE_PROGRESSING = frozenset({"PIPELINE_STARTING", "PIPELINE_RESTARTING"})
PIPELINE_UP = frozenset({"PIPELINE_RUNNING", "PIPELINE_STANDBY"})


@dataclass(frozen=True)
class PipelineStatus:
    """One pipeline's sync status and health, and the facts they were judged from."""

    name: str  # `name`, or `project/name` outside the default project
    sync: Sync
    health: Health
    sync_reason: str = ""
    health_reason: str = ""
    action: str = ""  # the plan's action behind `sync` ("" when judged from annotations)
    managed_by: str = ""
    source_commit: str = ""
    state: str = ""  # Pachyderm's pipeline state, e.g. PIPELINE_RUNNING ("" when missing)
    version: int = 0
    applied_version: int | None = None
    job: LiveJob | None = None  # newest job of the version the pipeline runs now

    @property
    def reason(self) -> str:
        """Both reasons in one line, for people."""
        return "; ".join(r for r in (self.sync_reason, self.health_reason) if r)

    @property
    def ours(self) -> bool:
        """Does this pipeline count for `status --wait` and its exit code? Unmanaged ones are
        somebody else's: shown, never waited for."""
        return self.sync != Sync.UNMANAGED

    @property
    def good(self) -> bool:
        return self.sync == Sync.SYNCED and self.health == Health.HEALTHY


@dataclass(frozen=True)
class StatusReport:
    """Every pipeline's status and what it was compared with: `source_id` and `commit` of the
    specs, or None for both when sync was judged from the annotations alone."""

    pipelines: tuple[PipelineStatus, ...] = ()
    source_id: str | None = None
    commit: str | None = None


def _word(state: str, prefix: str) -> str:
    return state.removeprefix(prefix).lower() or "unknown"


def _job_text(job: LiveJob) -> str:
    done = job.processed + job.skipped + job.failed
    return (f"job {job.id[:12]} {_word(job.state, 'JOB_')}: {done}/{job.total} datums, "
            f"{job.failed} failed")


def pipeline_health(lp: LivePipeline | None, job: LiveJob | None) -> tuple[Health, str]:
    """Health and its reason from the pipeline's state and its newest job (see module doc)."""
    if lp is None:
        return Health.MISSING, "no such pipeline in the cluster"
    if lp.stopped or lp.state == "PIPELINE_PAUSED":
        return Health.SUSPENDED, "stopped (`pachctl start pipeline` resumes it)"
    if lp.state in PIPELINE_DEGRADED:
        return Health.DEGRADED, (f"pipeline {_word(lp.state, 'PIPELINE_')}: "
                                 f"{lp.reason or 'no reason given'}")
    if job is not None and job.state in JOB_FAILED:
        return Health.DEGRADED, f"{_job_text(job)}: {job.reason or 'no reason given'}"
    if job is not None and job.state in JOB_PROGRESSING:
        return Health.PROGRESSING, _job_text(job)
    if lp.state in PIPELINE_PROGRESSING:
        return Health.PROGRESSING, f"pipeline {_word(lp.state, 'PIPELINE_')}"
    if lp.state not in PIPELINE_UP:
        return Health.UNKNOWN, f"pipeline state {lp.state or 'not reported'}"
    if job is None:
        return Health.HEALTHY, "no job yet: nothing to run"
    if job.state == "JOB_SUCCESS":
        return Health.HEALTHY, _job_text(job)
    return Health.UNKNOWN, _job_text(job)


def current_job(lp: LivePipeline | None, job: LiveJob | None) -> LiveJob | None:
    """The job if it belongs to the version the pipeline runs now (0 = version not reported);
    a job of an earlier version (killed by an update, failed under the old spec) never counts."""
    if lp is None or job is None:
        return None
    return job if job.pipeline_version in (0, lp.version) else None


def _applied_version(ann: Mapping[str, str]) -> int | None:
    text = ann.get(ANN_APPLIED_VERSION, "")
    return int(text) if text.isdigit() else None


def annotation_sync(lp: LivePipeline) -> tuple[Sync, str]:
    """Sync judged from the pipeline's own annotations, when no specs are at hand."""
    ann = annotations_of(lp.spec)
    if not ann.get(ANN_MANAGED_BY):
        return Sync.UNMANAGED, f"no {ANN_MANAGED_BY} annotation (from the annotations alone)"
    if touched_by_others(ann, lp, spec_hash(normalize_spec(lp.spec, lp.project))):
        return Sync.DRIFTED, ("updated since pachsync applied it (from the annotations alone; "
                              "no specs compared)")
    return Sync.SYNCED, ("as pachsync applied it (from the annotations alone; "
                         "no specs compared)")


def _status(name: str, lp: LivePipeline | None, job: LiveJob | None, sync: Sync,
            sync_reason: str, change: PipelineChange | None) -> PipelineStatus:
    ann = annotations_of(lp.spec) if lp is not None else {}
    job = current_job(lp, job)
    health, health_reason = pipeline_health(lp, job)
    return PipelineStatus(
        name=name, sync=sync, health=health, sync_reason=sync_reason,
        health_reason=health_reason, action=change.action if change else "",
        managed_by=ann.get(ANN_MANAGED_BY, "") or (change.managed_by if change else ""),
        source_commit=ann.get(ANN_SOURCE_COMMIT, ""),
        state=lp.state if lp is not None else "", version=lp.version if lp is not None else 0,
        applied_version=_applied_version(ann), job=job)


def pipeline_statuses(plan: Plan | None, live: LiveState) -> tuple[PipelineStatus, ...]:
    """Sync and health of every pipeline: those of the plan (git's, in DAG order, then the live
    ones git does not name), or without a plan every live pipeline, judged by its annotations.
    `live.jobs` holds the newest job per qualified pipeline name (absent: no job yet)."""
    by_name = {qualify(p.project, p.name): p for p in live.pipelines}
    if plan is None:
        return tuple(_status(name, lp, live.jobs.get(name), *annotation_sync(lp), None)
                     for name, lp in sorted(by_name.items()))
    return tuple(
        _status(c.name, by_name.get(c.name), live.jobs.get(c.name),
                SYNC_OF_ACTION.get(c.action, DEFAULT_SYNC), c.reason, c)
        for c in plan.pipelines)


def waiting_on(statuses: Iterable[PipelineStatus]) -> tuple[PipelineStatus, ...]:
    """Our pipelines still Progressing (what `status --wait` waits for)."""
    return tuple(s for s in statuses if s.ours and s.health == Health.PROGRESSING)


def all_good(statuses: Iterable[PipelineStatus]) -> bool:
    """Every pipeline of ours Synced and Healthy (`status --wait` exits 0)."""
    return all(s.good for s in statuses if s.ours)


def infer_source_id(desired: Iterable[str], live: LiveState) -> str | None:
    """The one `managed-by` carried by the live pipelines that git names, if exactly one: whose
    pipelines a checkout of the specs describes (`pachsync status --specs DIR`), so a pipeline
    removed from that checkout shows as the agent sees it (Orphan), not as somebody else's."""
    wanted = set(desired)
    owners = {annotations_of(p.spec).get(ANN_MANAGED_BY, "") for p in live.pipelines
              if qualify(p.project, p.name) in wanted}
    owners.discard("")
    return owners.pop() if len(owners) == 1 else None


def job_dict(job: LiveJob | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {"id": job.id, "state": job.state, "reason": job.reason, "total": job.total,
            "processed": job.processed, "skipped": job.skipped, "failed": job.failed,
            "pipeline_version": job.pipeline_version}


def to_dict(s: PipelineStatus) -> dict[str, Any]:
    """The JSON form shared by `pachsync status --format json` and the agent's /status."""
    return {
        "name": s.name, "sync": str(s.sync), "health": str(s.health),
        "sync_reason": s.sync_reason, "health_reason": s.health_reason, "action": s.action,
        "managed_by": s.managed_by or None, "source_commit": s.source_commit or None,
        "state": s.state, "version": s.version, "applied_version": s.applied_version,
        "last_job": job_dict(s.job),
    }
