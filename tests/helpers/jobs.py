"""Reading and waiting for Pachyderm jobs through the real python-pachyderm client, the same way
against localpachd in process, as a subprocess, or in a demo.

Used by the agent integration tests, the localpachd pps tests and the e2e tests. Waits poll
`list_job`; each test gives its own timeout (pytest's per-test timeout is the last guard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from python_pachyderm.proto.v2.pps import pps_pb2

from helpers.wait import wait_for

TERMINAL = frozenset({"JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE"})


def state(job: Any) -> str:
    """A JobInfo's state by name, e.g. "JOB_SUCCESS"."""
    return str(pps_pb2.JobState.Name(job.state))


def is_finished(job: Any) -> bool:
    return state(job) in TERMINAL


def newest_job(client: Any, pipeline: str) -> Any | None:
    """The pipeline's most recently created JobInfo, or None before its first job."""
    jobs = list(client.list_job(pipeline_name=pipeline))
    return max(jobs, key=lambda j: (j.created.seconds, j.created.nanos)) if jobs else None


def wait_jobs(client: Any, names: list[str], timeout: float = 60.0,
              after: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Newest JobInfo per pipeline once every one of them is finished; with `after` (pipeline ->
    job id), only once each newest job is another one than that."""
    seen: dict[str, Any] = {}

    def finished() -> dict[str, Any] | None:
        seen.clear()
        seen.update({n: j for n in names if (j := newest_job(client, n)) is not None})
        fresh = after is None or all(j.job.id != after[n] for n, j in seen.items())
        done = len(seen) == len(names) and fresh and all(map(is_finished, seen.values()))
        return dict(seen) if done else None

    return wait_for(finished, lambda: f"jobs to finish: { {n: state(j) for n, j in seen.items()} }",
                    timeout, interval=0.1)
