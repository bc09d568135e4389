"""Crash safety: kill -9 the server mid-job; after a restart the job runs to the same result
and no output commit ever shows a half-written datum.

No step depends on how long a datum takes: each datum writes half its output, drops a marker
file `started.<file>.<pid>` and then blocks until the test creates `go.<pid>` (or `go.all`), so
the test kills the server while a datum is provably half done, and inspects the restarted job
while it is provably still running.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import pachd
from helpers.wait import wait_for
from lpd_pps_helpers import pfs, put, read_repo, sh_pipeline, state
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.jobrun import RECORD_EVERY

Started = tuple[str, int]  # (the datum's file name, the pid of its shell)


def datum(gate: Path) -> tuple[str, ...]:
    """Half the output, a marker, then wait for the test's go (bounded, so an orphan of the
    crash never outlives the test run), then the other half."""
    return (
        f"gate={shlex.quote(str(gate))}",
        "name=$(basename $data)",
        "echo partial > /pfs/out/$name",
        'touch "$gate/started.$name.$$"',  # after the first half: the half output exists
        "n=0",
        'while [ ! -e "$gate/go.$$" ] && [ ! -e "$gate/go.all" ]; do',
        "  n=$((n + 1)); [ $n -le 6000 ] || exit 3; sleep 0.05",
        "done",
        "echo done >> /pfs/out/$name",
        'touch "$gate/finished.$name.$$"',
    )


def started(gate: Path, besides: Collection[int] = ()) -> list[Started]:
    """The datums that have started (and written half their output), but those in `besides`."""
    names = (p.name.split(".") for p in gate.glob("started.*"))
    return sorted((name, int(pid)) for _, name, pid in names if int(pid) not in besides)


def serve(data_dir: Path) -> tuple[subprocess.Popen[str], Any]:
    proc, port = pachd.serve(data_dir, "--runtime", "subprocess", "--max-parallelism", "1")
    return proc, pachd.client(port)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        pachd.stop(p, timeout=10)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gate"
    path.mkdir()
    yield path
    (path / "go.all").touch()  # let any datum still waiting (an orphan of the crash) end


def test_kill_9_mid_job_then_restart_gives_the_same_result(
    tmp_path: Path, procs: list[Any], gate: Path
) -> None:
    proc, client = serve(tmp_path / "pachd")
    procs.append(proc)
    client.create_repo("data")
    put(client, "data", {"/a": "1", "/b": "2", "/c": "3"})
    sh_pipeline(client, "p", pfs("data", "/*"), *datum(gate))
    job_id = next(iter(client.list_job("p"))).job.id
    [(_, first)] = wait_for(lambda: started(gate), "the first datum")  # one at a time
    # Progress is written when a datum ends at least RECORD_EVERY s after the last write (the
    # job's start, before this datum began): holding the datum that long (a lower bound, never
    # a race) makes its end written at once, so the crash comes after recorded progress.
    time.sleep(RECORD_EVERY + 0.1)
    (gate / f"go.{first}").touch()
    wait_for(lambda: next(iter(client.inspect_job(job_id, "p"))).data_processed == 1,
             "the first datum to be processed")  # fmt: skip
    [(half, second)] = wait_for(lambda: started(gate, {first}), "the second datum")
    assert not (gate / f"finished.{half}.{second}").exists()  # half written, blocked: crash now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    proc, client = serve(tmp_path / "pachd")
    procs.append(proc)
    [(_, rerun)] = wait_for(lambda: started(gate, {first, second}), "the restarted job")
    # the restarted job is provably mid-run (its datum waits for us): its output commit is
    # still open and holds nothing, neither the first run's datum nor the killed one's half
    assert list(client.list_file(("p", job_id), "/")) == []
    # The crash's orphan, if it outlived the server (rewrite mode; a namespace datum dies with
    # its launcher), finishes in its own old scratch tree: it never reaches the new commit.
    (gate / f"go.{second}").touch()
    wait_for(lambda: (gate / f"finished.{half}.{second}").exists()
             or not Path(f"/proc/{second}").exists(), "the orphaned datum to end")  # fmt: skip
    assert list(client.list_file(("p", job_id), "/")) == []
    (gate / "go.all").touch()
    done = next(iter(client.inspect_job(job_id, "p", wait=True)))
    assert state(done) == "JOB_SUCCESS" and done.restart == 1
    assert (done.data_processed, done.data_total) == (3, 3)
    assert read_repo(client, "p") == {f"/{n}": "partial\ndone\n" for n in "abc"}
    assert pps_pb2.JobState.Name(done.state) == "JOB_SUCCESS"
    reran = started(gate, {first, second})
    assert sorted(name for name, _ in reran) == ["a", "b", "c"]  # every datum ran again
    assert rerun in {pid for _, pid in reran}
