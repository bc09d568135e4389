"""Reading and waiting for Pachyderm jobs through the real python-pachyderm client, the same way
against localpachd in process, as a subprocess, or in a demo.

Used by the agent integration tests, the localpachd pps tests and the e2e tests. Waits poll
`list_job`; each test gives its own timeout (pytest's per-test timeout is the last guard).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from python_pachyderm.proto.v2.pps import pps_pb2

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
    deadline = time.monotonic() + timeout
    while True:
        newest = {n: j for n in names if (j := newest_job(client, n)) is not None}
        fresh = after is None or all(j.job.id != after[n] for n, j in newest.items())
        if len(newest) == len(names) and fresh and all(map(is_finished, newest.values())):
            return newest
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not finished in {timeout}s: "
                                 f"{ {n: state(j) for n, j in newest.items()} }")
        time.sleep(0.1)
