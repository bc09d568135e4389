"""A job's output commit is written as soon as its last datum's result is in: ending the batching
slots' user processes and removing the scratch tree come after it (issue 15, benchmark (2):
each job of model -> test -> select waited for both before the next job could start).

Real localpachd (in process, port 0), real python-pachyderm client, real user code (the batching
user code of test_lpd_batching, a `cp` shell datum). The teardown is held by our own wrappers
(the runtime's `kill_datum`, jobrun's `remove_tree`) until the test has seen the output commit
finished, with a generous bound that code finishing the commit after its teardown exceeds by
construction (it waits out the whole bound, then the assertion fails)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import python_pachyderm
from helpers.pfs import put, read_repo
from helpers.wait import wait_for
from lpd_pps_helpers import last_job, pfs, sh_pipeline
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import jobrun
from localpachd import runtime_pfsmount as pfsmount
from localpachd.server import start

USER = Path(__file__).with_name("lpd_batching_user.py").resolve()
HOLD = 20.0  # seconds a teardown step is held at most; the commit needs far less


class Teardown:
    """Holds every call of the wrapped teardown steps until `release` (or HOLD seconds)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.entered = threading.Event()
        self.finished = threading.Event()  # a held step returned
        self.calls: list[str] = []

    def hold(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kw: Any) -> Any:
            self.calls.append(name)
            self.entered.set()
            self.released.wait(HOLD)
            try:
                return real(*args, **kw)
            finally:
                self.finished.set()

        return held


@pytest.fixture
def lpd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Teardown]]:
    monkeypatch.setenv(pfsmount.MODE_ENV, "rewrite")
    pfsmount.forget_mode()
    srv = start(data_dir=tmp_path / "pachd", port=0, runtime="subprocess")
    # The batching user code's `Client()` reads PACH_CONFIG (tests point it at a file of theirs).
    config = {"active_context": "t", "contexts": {"t": {"pachd_address": f"{srv.host}:{srv.port}"}}}
    Path(os.environ["PACH_CONFIG"]).write_text(json.dumps({"v2": config}))
    teardown = Teardown()
    runtime = srv.ctx.pps_engine.runtime
    monkeypatch.setattr(runtime, "kill_datum", teardown.hold("kill", runtime.kill_datum))
    monkeypatch.setattr(jobrun, "remove_tree", teardown.hold("scratch", jobrun.remove_tree))
    try:
        yield python_pachyderm.Client(host=srv.host, port=srv.port), srv, teardown
    finally:
        teardown.released.set()
        srv.stop()
        pfsmount.forget_mode()


def _create(c: Any, batching: bool, tmp: Path) -> None:
    c.create_repo("data")
    put(c, "data", {f"/f{i}": f"x{i}" for i in range(3)})
    spec = pps_pb2.ParallelismSpec(constant=2)
    if batching:
        c.create_pipeline("p", input=pfs("data", "/*", name="in"), parallelism_spec=spec,
                          transform=pps_pb2.Transform(
                              cmd=["python3", str(USER), "/pfs/out"], datum_batching=True,
                              env={"STARTS": str(tmp / "starts")}))  # fmt: skip
    else:
        sh_pipeline(c, "p", pfs("data", "/*", name="in"), 'cp "$in" /pfs/out/',
                    parallelism_spec=spec)  # fmt: skip


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "per-datum"])
def test_the_output_commit_is_finished_before_the_job_tears_down(
    lpd: tuple[Any, Any, Teardown], tmp_path: Path, batching: bool
) -> None:
    c, _srv, teardown = lpd
    _create(c, batching, tmp_path)
    assert teardown.entered.wait(60), "the job never began its teardown"
    commit = next(iter(c.list_job("p"))).output_commit
    c.wait_commit(commit)  # returns once the output commit is finished
    held = not teardown.finished.is_set()
    teardown.released.set()
    assert held, f"the output commit waited for the job's teardown ({teardown.calls})"
    job = last_job(c, "p")
    assert job.state == pps_pb2.JobState.JOB_SUCCESS, job.reason
    wait_for(lambda: "scratch" in teardown.calls, "the scratch tree to be removed after the commit")
    assert ("kill" in teardown.calls) == batching
    assert set(read_repo(c, "p")) == {f"/f{i}" for i in range(3)}


@pytest.mark.parametrize("exit_code", [0, 3], ids=["success", "failure"])
def test_a_job_seen_ended_already_has_its_end_line(
    lpd: tuple[Any, Any, Teardown], exit_code: int
) -> None:
    """The job's end line ("job successful, closing commits" / "failing job with reason: …") is
    written with the end itself, not after the teardown: a client that sees the job ended while
    the teardown is still held finds the line (it was missing, a flaky GetLogs test showed)."""
    c, _srv, teardown = lpd
    c.create_repo("data")
    put(c, "data", {"/a": "1"})
    sh_pipeline(c, "p", pfs("data", "/"), f"exit {exit_code}")
    assert teardown.entered.wait(60), "the job never began its teardown"
    job = wait_for(lambda: (j := last_job(c, "p")).state != pps_pb2.JobState.JOB_RUNNING and j,
                   "the job to end")  # fmt: skip
    texts = [m.message for m in c.get_pipeline_logs("p", master=True)]
    held = not teardown.finished.is_set()
    teardown.released.set()
    assert held, f"the job was seen ended only after its teardown ({teardown.calls})"
    want = "job successful, closing commits" if exit_code == 0 else "failing job with reason: "
    assert pps_pb2.JobState.Name(job.state) == ("JOB_SUCCESS" if exit_code == 0 else "JOB_FAILURE")
    assert texts and texts[-1].startswith(want), texts
