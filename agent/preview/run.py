"""Apply one tree's specs to a localpachd, wait for its jobs, and read what they produced.

Used by `agent.preview.flow` for the base run and the head run. Applying is `agent.sync`'s
`make_plan` + `make_data_plan` + `execute`, exactly what `pachsync apply` and the agent do; the
results (accuracy per model, the selection, each pipeline's newest job with its runtime and, for
a failed job, the last lines of its logs) are plain JSON data, so the base run can be cached.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.cluster.client import Connection, rpc_errors
from agent.cluster.observe import newest_jobs
from agent.cluster.outputs import read_metrics, read_select, recent_jobs
from agent.errors import PachsyncError

TERMINAL = {"JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE"}
LOG_LINES = 20  # last log lines shown for a failed job
METRIC_SUFFIX = "_metric.txt"


@dataclass(frozen=True)
class JobResult:
    pipeline: str
    id: str
    state: str  # without JOB_, e.g. "SUCCESS"
    processed: int
    skipped: int
    failed: int
    total: int
    seconds: float | None  # started → finished
    reason: str = ""
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """What one run left in the cluster: jobs (newest per pipeline), accuracies, selection."""

    jobs: tuple[JobResult, ...] = ()
    accuracy: dict[str, float] = field(default_factory=dict)  # model -> test accuracy
    selected: tuple[str, ...] = ()
    best_accuracy: float | None = None
    rule: Any = None
    job_ids: tuple[str, ...] = ()  # every job id in the cluster after this run

    @property
    def failed(self) -> tuple[JobResult, ...]:
        return tuple(j for j in self.jobs if j.state != "SUCCESS")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> RunResult:
        jobs = tuple(JobResult(**{**j, "log_tail": tuple(j.get("log_tail", ()))})
                     for j in data.get("jobs", ()))
        return RunResult(jobs, dict(data.get("accuracy", {})), tuple(data.get("selected", ())),
                         data.get("best_accuracy"), data.get("rule"),
                         tuple(data.get("job_ids", ())))


def wait_for_jobs(conn: Connection, names: list[str], timeout: float,
                  poll: float = 0.5) -> None:
    """Until the newest job of every pipeline is finished, twice in a row (a downstream job
    starts when its upstream one finishes); PachsyncError after `timeout` seconds."""
    deadline, stable = time.monotonic() + timeout, 0
    while stable < 2:
        jobs = newest_jobs(conn, names)
        done = len(jobs) == len(names) and all(j.state in TERMINAL for j in jobs.values())
        stable = stable + 1 if done else 0
        if time.monotonic() > deadline:
            states = ", ".join(f"{n}: {j.state}" for n, j in sorted(jobs.items()))
            raise PachsyncError(f"the preview's jobs did not finish within {timeout:.0f}s "
                                f"({states or 'no jobs'})", hint="pass a larger --timeout")
        time.sleep(poll)


def _log_tail(conn: Connection, pipeline: str, job_id: str) -> tuple[str, ...]:
    try:
        with rpc_errors(f"reading the logs of job {job_id} of {pipeline!r}", conn.target):
            lines = [m.message.rstrip("\n")  # the user code's, not the worker's own lines
                     for m in conn.client.get_job_logs(pipeline, job_id) if m.user]
    except PachsyncError as exc:
        return (f"(logs unavailable: {exc.message})",)
    return tuple(lines[-LOG_LINES:])


def _job(conn: Connection, pipeline: str) -> JobResult | None:
    found = recent_jobs(conn.client, pipeline, limit=1, target=conn.target)
    if not found:
        return None
    j = found[0]
    live = newest_jobs(conn, [pipeline]).get(pipeline)
    reason = live.reason if live is not None and live.id == j.id else ""
    seconds = j.finished - j.started if j.finished and j.started else None
    tail = _log_tail(conn, pipeline, j.id) if j.state != "SUCCESS" else ()
    return JobResult(pipeline, j.id, j.state, j.processed, j.skipped, j.failed, j.total,
                     seconds, reason, tail)


def _all_job_ids(conn: Connection, names: Iterable[str]) -> tuple[str, ...]:
    ids: list[str] = []
    for name in names:
        ids += [j.id for j in recent_jobs(conn.client, name, limit=1000, target=conn.target)]
    return tuple(sorted(set(ids)))


def collect(conn: Connection, names: list[str]) -> RunResult:
    """The results now in the cluster (metrics and selection only if select succeeded)."""
    jobs = tuple(j for j in (_job(conn, n) for n in names) if j is not None)
    ok = {j.pipeline for j in jobs if j.state == "SUCCESS"}
    accuracy: dict[str, float] = {}
    selected: tuple[str, ...] = ()
    best, rule = None, None
    if "test" in ok:
        accuracy = {k.removesuffix(METRIC_SUFFIX): v
                    for k, v in read_metrics(conn.client, target=conn.target).items()}
    if "select" in ok:
        summary = read_select(conn.client, target=conn.target).selected or {}
        selected = tuple(str(s) for s in summary.get("selected", ()))
        best, rule = summary.get("best_accuracy"), summary.get("rule")
    return RunResult(jobs, accuracy, selected, best, rule, _all_job_ids(conn, names))
