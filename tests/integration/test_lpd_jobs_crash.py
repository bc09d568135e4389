"""Crash safety: kill -9 the server mid-job; after a restart the job runs to the same result
and no output commit ever shows a half-written datum."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import pachd
from lpd_pps_helpers import pfs, put, read_repo, sh_pipeline, state
from python_pachyderm.proto.v2.pps import pps_pb2

DATUM = ('echo partial > /pfs/out/$(basename $data)', 'sleep 1',
         'echo done >> /pfs/out/$(basename $data)')  # fmt: skip


def serve(data_dir: Path) -> tuple[subprocess.Popen[str], Any]:
    proc, port = pachd.serve(data_dir, "--runtime", "subprocess", "--max-parallelism", "1")
    return proc, pachd.client(port)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        pachd.stop(p, timeout=10)


def test_kill_9_mid_job_then_restart_gives_the_same_result(
    tmp_path: Path, procs: list[Any]
) -> None:
    proc, client = serve(tmp_path / "pachd")
    procs.append(proc)
    client.create_repo("data")
    put(client, "data", {"/a": "1", "/b": "2", "/c": "3"})
    sh_pipeline(client, "p", pfs("data", "/*"), *DATUM)
    job_id = next(iter(client.list_job("p"))).job.id
    deadline = time.monotonic() + 60
    while next(iter(client.inspect_job(job_id, "p"))).data_processed < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    proc, client = serve(tmp_path / "pachd")
    procs.append(proc)
    # the restarted job needs >= 3 s: its output commit is still open and holds nothing yet
    assert list(client.list_file(("p", job_id), "/")) == []
    done = next(iter(client.inspect_job(job_id, "p", wait=True)))
    assert state(done) == "JOB_SUCCESS" and done.restart == 1
    assert (done.data_processed, done.data_total) == (3, 3)
    assert read_repo(client, "p") == {f"/{n}": "partial\ndone\n" for n in "abc"}
    assert pps_pb2.JobState.Name(done.state) == "JOB_SUCCESS"
