"""Datum batching (`transform.datum_batching`, issue 15): one user process per worker slot and
job asks localpachd's worker API for datum after datum.

Real localpachd (in process, port 0), the real python-pachyderm client, and real user code
(tests/integration/lpd_batching_user.py: python-pachyderm's `batch_all_datums` where a real /pfs
exists, a `next_datum` loop elsewhere) run by both runtimes and in both /pfs modes the machine
allows. Starts are counted twice: the pids the code appends to a file outside /pfs, and the
job's master lines "starting user code (datum batching)".
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import python_pachyderm
from google.protobuf import duration_pb2
from helpers.pfs import put, read_repo
from helpers.procs import alive
from helpers.wait import wait_for
from lpd_pps_helpers import counts, last_job, pfs
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import runtime_pfsmount as pfsmount
from localpachd.batching import MAX_START_FAILURES, START_LINE
from localpachd.runtime import DatumRun
from localpachd.runtime_subprocess import SubprocessRuntime
from localpachd.runtime_warm import WarmRuntime
from localpachd.server import start

USER = Path(__file__).with_name("lpd_batching_user.py").resolve()
MODES = [("warm", "namespace"), ("subprocess", "namespace"), ("warm", "rewrite"),
         ("subprocess", "rewrite")]  # fmt: skip


@dataclass
class Lpd:
    client: Any
    srv: Any
    tmp: Path

    @property
    def starts(self) -> Path:
        return self.tmp / "starts"

    def pids(self) -> list[int]:
        text = self.starts.read_text() if self.starts.exists() else ""
        return [int(line) for line in text.split()]

    def pipeline(self, name: str, style: str = "raw", env: dict[str, str] | None = None,
                 **kw: Any) -> None:  # fmt: skip
        argv = ["python3", str(USER), "/pfs/out", *(["decorator"] if style == "decorator" else [])]
        self.client.create_pipeline(
            name, input=kw.pop("input", pfs("data", "/*", name="in")),
            transform=pps_pb2.Transform(cmd=argv, env={"STARTS": str(self.starts), **(env or {})},
                                        datum_batching=True, **kw.pop("transform", {})),
            **kw)  # fmt: skip

    def job(self, files: int, style: str = "raw", **kw: Any) -> Any:
        """Repo `data` of `files` files and pipeline `b` over it (`pipeline`'s arguments): its
        first job, once ended."""
        self.client.create_repo("data")
        put(self.client, "data", _files(files))
        self.pipeline("b", style, **kw)
        return last_job(self.client, "b")


def _server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str, mode: str
            ) -> Generator[Lpd, None, None]:  # fmt: skip
    monkeypatch.setenv(pfsmount.MODE_ENV, mode)
    pfsmount.forget_mode()
    if pfsmount.mode() != mode:
        pfsmount.forget_mode()
        pytest.skip(f"this machine refuses private mount namespaces: no {mode} mode here")
    srv = start(data_dir=tmp_path / "pachd", port=0, runtime=runtime)
    # The user code's `Client()` reads PACH_CONFIG, which tests point at a file of their own.
    config = {"active_context": "t", "contexts": {"t": {"pachd_address": f"{srv.host}:{srv.port}"}}}
    Path(os.environ["PACH_CONFIG"]).write_text(json.dumps({"v2": config}))
    try:
        yield Lpd(python_pachyderm.Client(host=srv.host, port=srv.port), srv, tmp_path)
    finally:
        srv.stop()
        pfsmount.forget_mode()


@pytest.fixture(params=MODES, ids=["-".join(m) for m in MODES])
def lpd(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[Lpd]:  # fmt: skip
    yield from _server(tmp_path, monkeypatch, *request.param)


@pytest.fixture
def sub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lpd]:
    """One runtime and mode, for what does not depend on them."""
    yield from _server(tmp_path, monkeypatch, "subprocess", "rewrite")


def _files(n: int, prefix: str = "f") -> dict[str, str]:
    return {f"/{prefix}{i}": f"x{i}" for i in range(n)}


def _start_lines(c: Any, pipeline: str, job_id: str) -> int:
    """The job's master lines that say a slot started its user code."""
    lines = c.get_pipeline_logs(pipeline, master=True)
    return sum(START_LINE in line.message for line in lines if line.job_id == job_id)


def _datum_logs(c: Any, pipeline: str, job_id: str) -> dict[str, str]:
    by: dict[str, str] = defaultdict(str)
    for line in c.get_job_logs(pipeline, job_id):
        by[line.datum_id] += line.message
    return by


def _datums(c: Any, pipeline: str, job_id: str) -> dict[str, Any]:
    """Input file name -> DatumInfo."""
    return {os.path.basename(d.data[0].file.path): d for d in c.list_datum(pipeline, job_id)}


def _ok(job: Any) -> None:
    assert job.state == pps_pb2.JobState.JOB_SUCCESS, (job.state, job.reason)


def _expected(c: Any, pipeline: str, job_id: str, names: list[str]) -> dict[str, str]:
    """What the user code writes: the input upper-cased, then its datum's PACH_DATUM_ID[:8]."""
    ids = {name: info.datum.id for name, info in _datums(c, pipeline, job_id).items()}
    return {f"/{n}": f"X{n[1:]}{ids[n][:8]}" for n in names}


# ---------------------------------------------------------------- one start per slot


@pytest.mark.parametrize("parallelism", [1, 2])
def test_each_slot_starts_its_user_code_once_for_all_its_datums(lpd: Lpd, parallelism: int
                                                                 ) -> None:  # fmt: skip
    c = lpd.client
    style = "raw" if pfsmount.mode() == pfsmount.REWRITE else "decorator"
    job = lpd.job(7, style, parallelism_spec=pps_pb2.ParallelismSpec(constant=parallelism))
    _ok(job)
    assert counts(job) == (7, 0, 0, 7)
    assert len(set(lpd.pids())) == len(lpd.pids()) == parallelism
    assert _start_lines(c, "b", job.job.id) == parallelism
    names = [f"f{i}" for i in range(7)]
    assert read_repo(c, "b") == _expected(c, "b", job.job.id, names)
    logs = _datum_logs(c, "b", job.job.id)
    for name, info in _datums(c, "b", job.job.id).items():
        mine = logs[info.datum.id]
        assert f"processing {name} " in mine and "finished running user code" in mine
        assert all(f"processing {o} " not in mine for o in names if o != name)
    details = next(iter(c.inspect_pipeline("b", details=True))).details
    assert details.transform.datum_batching
    runtime = lpd.srv.ctx.pps_engine.runtime
    if runtime.name == "warm":  # forked from one zygote, whatever the slots' ports and tokens
        assert runtime.stats["zygotes"] == 1 and runtime.stats["cold"] == 0


def test_a_slot_process_cannot_use_another_slots_worker_api(lpd: Lpd) -> None:
    job = lpd.job(4, env={"PEERS": "2"}, parallelism_spec=pps_pb2.ParallelismSpec(constant=2))
    _ok(job)
    probes = {p.name: p.read_text() for p in lpd.tmp.glob("probe.*")}
    assert len(probes) == 2 and set(probes.values()) == {"PERMISSION_DENIED"}


# ---------------------------------------------------------------- outputs and skipping


def test_outputs_are_tagged_per_datum_and_unchanged_datums_are_skipped(sub: Lpd) -> None:
    c = sub.client
    first = sub.job(4)
    _ok(first)
    with c.commit("data", "master") as commit:
        c.delete_file(commit, "/f1")  # its datum's output goes with it
        c.put_file_bytes(commit, "/f2", b"y2")  # re-run
        c.put_file_bytes(commit, "/f9", b"x9")  # new
    second = last_job(c, "b")
    _ok(second)
    assert counts(second) == (2, 2, 0, 4)
    assert len(sub.pids()) == 2  # one start per job
    done = {os.path.basename(d.data[0].file.path) for d in c.list_datum("b", second.job.id)
            if d.state == pps_pb2.DatumState.SUCCESS}  # fmt: skip
    assert done == {"f2", "f9"}
    ids = {n: i.datum.id for n, i in _datums(c, "b", second.job.id).items()}
    assert read_repo(c, "b") == {
        "/f0": f"X0{ids['f0'][:8]}", "/f3": f"X3{ids['f3'][:8]}",
        "/f2": f"Y2{ids['f2'][:8]}", "/f9": f"X9{ids['f9'][:8]}",
    }  # fmt: skip


# ---------------------------------------------------------------- failures


def test_a_datum_that_raises_fails_after_its_tries_while_the_others_succeed(lpd: Lpd) -> None:
    c = lpd.client
    job = lpd.job(5, env={"FAIL_ON": "f2"}, datum_tries=2)
    assert job.state == pps_pb2.JobState.JOB_FAILURE
    assert counts(job) == (4, 0, 1, 5)
    datums = _datums(c, "b", job.job.id)
    assert datums["f2"].state == pps_pb2.DatumState.FAILED
    log = _datum_logs(c, "b", job.job.id)[datums["f2"].datum.id]
    assert log.count("ValueError('cannot process f2')") == 2 * 2  # printed and reported, twice
    assert "attempt 1/2 failed" in log and "attempt 2/2 failed" in log
    assert {n for n, d in datums.items() if d.state == pps_pb2.DatumState.SUCCESS} == {
        "f0", "f1", "f3", "f4"}  # fmt: skip
    # Pachyderm restarts the user code after a reported error: 1 + at most one per attempt.
    assert 2 <= len(lpd.pids()) <= 3 and _start_lines(c, "b", job.job.id) == len(lpd.pids())


def test_err_cmd_runs_after_each_failed_attempt_and_recovers_the_datum(sub: Lpd) -> None:
    c = sub.client
    marks = sub.tmp / "err"
    job = sub.job(3, env={"FAIL_ON": "f1"}, datum_tries=3,
                  transform={"err_cmd": ["sh", "-c", f'echo "$PACH_DATUM_ID" >> {marks}']})
    _ok(job)  # a recovered datum does not fail the job
    datums = _datums(c, "b", job.job.id)
    assert datums["f1"].state == pps_pb2.DatumState.RECOVERED
    assert marks.read_text().split() == [datums["f1"].datum.id] * 3


def test_user_code_that_exits_mid_batch_is_restarted_and_the_job_succeeds(lpd: Lpd) -> None:
    c = lpd.client
    # Each process exits when handed its third datum: P1 does 2, P2 does 2, P3 the last one.
    job = lpd.job(5, env={"EXIT_ON": "3"}, datum_tries=3)
    _ok(job)
    assert counts(job) == (5, 0, 0, 5)
    assert len(lpd.pids()) == 3 == _start_lines(c, "b", job.job.id)
    assert read_repo(c, "b") == _expected(c, "b", job.job.id, [f"f{i}" for i in range(5)])
    logs = _datum_logs(c, "b", job.job.id).values()
    cut = [log for log in logs if "exiting on datum 3" in log]
    assert len(cut) == 2 and all("attempt 1/3 failed: user code exited with status 3" in log
                                 for log in cut)  # fmt: skip


def test_code_that_never_asks_for_a_datum_fails_the_slot_after_a_few_starts(sub: Lpd) -> None:
    c = sub.client
    c.create_repo("data")
    put(c, "data", _files(6))
    c.create_pipeline("b", input=pfs("data", "/*", name="in"), transform=pps_pb2.Transform(
        cmd=["sh", "-c", f'echo $$ >> {sub.starts}; echo "no batching here"; exit 2'],
        datum_batching=True), datum_tries=2)  # fmt: skip
    job = last_job(c, "b")
    assert job.state == pps_pb2.JobState.JOB_FAILURE
    assert counts(job) == (0, 0, 6, 6)
    assert len(sub.pids()) == MAX_START_FAILURES == _start_lines(c, "b", job.job.id)
    reasons = {d.state for d in c.list_datum("b", job.job.id)}
    assert reasons == {pps_pb2.DatumState.FAILED}
    assert "before asking for a datum" in job.reason
    logs = "".join(_datum_logs(c, "b", job.job.id).values())
    assert logs.count("no batching here") == MAX_START_FAILURES


def test_a_hung_datum_times_out_and_the_process_is_restarted(lpd: Lpd) -> None:
    c = lpd.client
    # The first run of f1 hangs (for an hour); datum_timeout kills it, the retry succeeds.
    job = lpd.job(4, env={"HANG_ON": "f1"}, datum_tries=3,
                  datum_timeout=duration_pb2.Duration(seconds=2))  # fmt: skip
    _ok(job)
    datums = _datums(c, "b", job.job.id)
    log = _datum_logs(c, "b", job.job.id)[datums["f1"].datum.id]
    assert "attempt 1/3 failed: datum timed out after 2.0s" in log
    assert len(lpd.pids()) == 2
    assert read_repo(c, "b") == _expected(c, "b", job.job.id, [f"f{i}" for i in range(4)])


# ---------------------------------------------------------------- stopping


def _hang(lpd: Lpd, **kw: Any) -> tuple[Any, int]:
    """A batching job whose user code hangs on its only datum; (the job, its process's pid)."""
    c = lpd.client
    c.create_repo("data")
    put(c, "data", {"/f0": "x0"})
    lpd.pipeline("b", env={"HANG_ON": "f0"}, **kw)
    wait_for(lambda: (lpd.tmp / "hung").exists(), "the user code to hang on its datum")
    [pid] = lpd.pids()
    return next(iter(c.list_job("b"))), pid


@pytest.mark.parametrize("how", ["stop_job", "job_timeout", "delete_pipeline"])
def test_stopping_the_job_kills_the_slot_process(sub: Lpd, how: str) -> None:
    kw = {"job_timeout": duration_pb2.Duration(seconds=2)} if how == "job_timeout" else {}
    job, pid = _hang(sub, **kw)
    if how == "stop_job":
        sub.client.stop_job(job.job.id, "b")
    elif how == "delete_pipeline":
        sub.client.delete_pipeline("b")
    wait_for(lambda: not alive(pid), "the slot's user process to be killed")
    if how != "delete_pipeline":
        end = last_job(sub.client, "b")
        assert (end.state, end.reason) == {
            "stop_job": (pps_pb2.JobState.JOB_KILLED, "job was stopped"),
            "job_timeout": (pps_pb2.JobState.JOB_FAILURE, "job timed out"),
        }[how]
    assert len(sub.pids()) == 1  # never started again


def test_restart_datum_restarts_the_slot_process_without_using_a_try(sub: Lpd) -> None:
    job, pid = _hang(sub, datum_tries=1)
    sub.client.restart_datum("b", job.job.id, data_filters=["/f0"])
    done = last_job(sub.client, "b")
    _ok(done)
    assert not alive(pid) and len(sub.pids()) == 2
    assert read_repo(sub.client, "b") == _expected(sub.client, "b", job.job.id, ["f0"])


def test_server_shutdown_kills_the_slot_process_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = _server(tmp_path, monkeypatch, "warm", "rewrite")
    lpd = next(gen)
    job, pid = _hang(lpd)
    gen.close()  # srv.stop()
    wait_for(lambda: not alive(pid), "the slot's user process to be gone after the stop")
    srv = start(data_dir=tmp_path / "pachd", port=0, runtime="subprocess")
    try:
        c = python_pachyderm.Client(host=srv.host, port=srv.port)
        again = next(iter(c.inspect_job(job.job.id, "b", wait=True)))  # runs again, hangs no more
        _ok(again)
    finally:
        srv.stop()


# ---------------------------------------------------------------- the warm runtime

STDIO = ("import sys; s = sys.stdout\n"
         "print(s.write_through, s.line_buffering, type(s.buffer).__name__,\n"
         "      type(sys.stderr.buffer).__name__, sys.stderr.line_buffering)\n")  # fmt: skip


def test_a_warm_child_buffers_its_output_as_its_own_pythonunbuffered_says(tmp_path: Path) -> None:
    """A batching slot sets PYTHONUNBUFFERED=1 (what it printed for a datum is in its log when
    it asks for the next); it still forks from the zygote of the pipeline's per-datum runs,
    and each child's stdio is what a fresh interpreter with its environment would build."""
    (tmp_path / "probe.py").write_text(STDIO)
    warm, cold = WarmRuntime(), SubprocessRuntime()
    try:
        for unbuffered in ("", "1", "", "1"):
            env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": unbuffered}
            got = [_probe(rt, tmp_path, env) for rt in (cold, warm)]
            assert got[0] == got[1] and got[0].startswith(b"True" if unbuffered else b"False")
        assert warm.stats["warm"] == 4 and warm.stats["zygotes"] == 1
    finally:
        warm.close()
        cold.close()


def _probe(runtime: Any, tmp: Path, env: dict[str, str]) -> bytes:
    log = tmp / "log"
    log.unlink(missing_ok=True)
    runtime.run(DatumRun(argv=(sys.executable, "probe.py"), env=env, cwd=tmp, stdin=None,
                         stdout_path=log, stderr_path=log))  # fmt: skip
    return log.read_bytes()
