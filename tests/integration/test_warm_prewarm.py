"""Prewarm: the warm runtime imports a pipeline's libraries before its first datum, and a
prewarm that imports something new never holds up datums of targets already loaded.

Real zygote processes. The "heavy" library below blocks its import until the test creates a
release file, so "the zygote is busy importing" is a state the test controls, not a race; the
library logs the pid of every process that imports it, which tells the zygote's preload apart
from a datum's own import. Last test: CreatePipeline on a real localpachd prewarms.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import python_pachyderm
from helpers.jobs import is_finished, newest_job, state
from helpers.procs import module_run
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.runtime import DatumOutcome, DatumRun
from localpachd.runtime_warm import WarmRuntime

SLOWLIB = """
    import os, sys, time
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "imports.log"), "a") as log:
        log.write(f"{os.getpid()}\\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(here, "release")) and time.monotonic() < deadline:
        time.sleep(0.02)
"""
PROGRAMS = {
    "pw_slowlib.py": SLOWLIB,
    "pw_heavy.py": "import pw_slowlib\nprint('heavy')\n",
    "pw_light.py": "print('light')\n",
}


@pytest.fixture
def progs(tmp_path: Path) -> Path:
    root = tmp_path / "progs"
    root.mkdir()
    for name, body in PROGRAMS.items():
        (root / name).write_text(textwrap.dedent(body))
    return root


@pytest.fixture
def warm() -> Iterator[WarmRuntime]:
    runtime = WarmRuntime()
    try:
        yield runtime
    finally:
        runtime.close()


def _importers(progs: Path) -> list[int]:
    log = progs / "imports.log"
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_prewarm_imports_in_the_zygote_before_any_datum(
    progs: Path, tmp_path: Path, warm: WarmRuntime
) -> None:
    heavy = module_run(progs, tmp_path / "proto", "pw_heavy")
    assert warm.prewarm(heavy, placeholder=str(tmp_path / "nowhere")) is True
    _wait(lambda: len(_importers(progs)) == 1, "the zygote's preload")
    zygote = next(iter(warm.pool.current.values()))
    assert _importers(progs) == [zygote.proc.pid]  # the zygote imported it, nothing ran
    assert warm.stats == {"warm": 0, "cold": 0, "zygotes": 1, "prewarmed": 1}
    # the same target again: nothing to do
    assert warm.prewarm(heavy, placeholder=str(tmp_path / "nowhere")) is False
    (progs / "release").touch()
    outcome = warm.run(module_run(progs, tmp_path / "d1", "pw_heavy"))
    assert outcome == DatumOutcome(0)
    assert (tmp_path / "d1" / "out.log").read_text() == "heavy\n"
    # project code is imported afresh by the datum too (never kept preloaded)
    assert len(_importers(progs)) == 2 and _importers(progs)[0] == zygote.proc.pid
    assert warm.stats == {"warm": 1, "cold": 0, "zygotes": 1, "prewarmed": 1}


def test_a_prewarm_importing_something_new_never_holds_up_a_loaded_target(
    progs: Path, tmp_path: Path, warm: WarmRuntime
) -> None:
    nowhere = str(tmp_path / "nowhere")
    assert warm.prewarm(module_run(progs, tmp_path / "p1", "pw_light"), nowhere)
    first = next(iter(warm.pool.current.values()))
    assert warm.prewarm(module_run(progs, tmp_path / "p2", "pw_heavy"), nowhere)
    _wait(lambda: len(_importers(progs)) == 1, "the loader's preload")
    loader = next(iter(warm.pool.loading.values()))
    assert loader is not first and _importers(progs) == [loader.proc.pid]
    # the loader is stuck importing; a datum of the loaded target runs on the first zygote
    with ThreadPoolExecutor(1) as pool:
        light = pool.submit(warm.run, module_run(progs, tmp_path / "d1", "pw_light"))
        assert light.result(timeout=30) == DatumOutcome(0)
    assert (tmp_path / "d1" / "out.log").read_text() == "light\n"
    assert warm.pool.current[next(iter(warm.pool.current))] is first
    (progs / "release").touch()
    assert warm.run(module_run(progs, tmp_path / "d2", "pw_heavy")) == DatumOutcome(0)
    # the loader answered its prewarms: it is the current zygote, the first one retires
    _wait(lambda: not warm.pool.loading, "the loader's promotion")
    assert next(iter(warm.pool.current.values())) is loader
    _wait(lambda: first.proc.poll() is not None, "the retired zygote to exit")
    assert warm.run(module_run(progs, tmp_path / "d3", "pw_light")) == DatumOutcome(0)
    assert (tmp_path / "d3" / "out.log").read_text() == "light\n"
    assert warm.stats == {"warm": 3, "cold": 0, "zygotes": 2, "prewarmed": 2}


def test_no_prewarm_when_the_startup_environment_names_each_datums_directory(
    progs: Path, tmp_path: Path, warm: WarmRuntime
) -> None:
    run = module_run(progs, tmp_path / "proto", "pw_light")
    placeholder = str(tmp_path / "proto")
    env = {**run.env, "PYTHONPATH": f"{progs}:{placeholder}/pfs/code"}
    assert warm.prewarm(DatumRun(**{**run.__dict__, "env": env}), placeholder) is False
    assert warm.prewarm(module_run(progs, tmp_path / "x", "no such module!"), placeholder) is False
    assert warm.stats["zygotes"] == 0 and warm.stats["prewarmed"] == 0


def test_create_pipeline_prewarms_before_any_data(progs: Path, tmp_path: Path) -> None:
    from localpachd.server import start

    srv = start(data_dir=tmp_path / "pachd", port=0, runtime="warm")
    try:
        client = python_pachyderm.Client(host=srv.host, port=srv.port)
        client.create_repo("in")
        client.create_pipeline(
            "heavy",
            transform=pps_pb2.Transform(
                cmd=["python3", "-m", "pw_heavy"], env={"PYTHONPATH": str(progs)}
            ),
            input=pps_pb2.Input(
                pfs=pps_pb2.PFSInput(repo="in", glob="/*")
            ),
        )
        runtime = srv.ctx.pps_engine.runtime  # type: ignore[attr-defined]
        _wait(lambda: len(_importers(progs)) == 1, "the prewarm at CreatePipeline")
        assert runtime.stats["prewarmed"] == 1 and runtime.stats["warm"] == 0
        (progs / "release").touch()
        with client.commit("in", "master") as c:
            client.put_file_bytes(c, "/a", b"x")
        _wait(lambda: (j := newest_job(client, "heavy")) is not None and is_finished(j)
              and j.data_total == 1, "the job over the new data")  # fmt: skip
        job = newest_job(client, "heavy")
        assert state(job) == "JOB_SUCCESS"
        assert (job.data_processed, runtime.stats["warm"], runtime.stats["zygotes"]) == (1, 1, 1)
    finally:
        srv.stop()


def test_a_restarted_server_prewarms_the_pipelines_it_already_has(
    progs: Path, tmp_path: Path
) -> None:
    from localpachd.server import start

    (progs / "release").touch()
    transform = pps_pb2.Transform(cmd=["python3", "-m", "pw_heavy"],
                                  env={"PYTHONPATH": str(progs)})  # fmt: skip
    srv = start(data_dir=tmp_path / "pachd", port=0, runtime="warm")
    try:
        client = python_pachyderm.Client(host=srv.host, port=srv.port)
        client.create_repo("in")
        light = pps_pb2.Transform(cmd=["python3", "-m", "pw_light"],
                                  env={"PYTHONPATH": str(progs)})  # fmt: skip
        for name, t in (("heavy", transform), ("stopped", light)):
            client.create_pipeline(name, transform=t, input=pps_pb2.Input(
                pfs=pps_pb2.PFSInput(repo="in", glob="/*")))
        client.stop_pipeline("stopped")
    finally:
        srv.stop()
    srv = start(data_dir=tmp_path / "pachd", port=0, runtime="warm")
    try:
        runtime = srv.ctx.pps_engine.runtime  # type: ignore[attr-defined]
        # no RPC at all: the running pipeline was prewarmed at start, the stopped one was not
        assert runtime.stats["prewarmed"] == 1
        zygote = next(iter(runtime.pool.current.values()))
        _wait(lambda: zygote.proc.pid in _importers(progs), "the prewarm at start")
    finally:
        srv.stop()


def test_a_zygote_killed_by_a_prewarmed_import_never_fails_a_datum(
    progs: Path, tmp_path: Path, warm: WarmRuntime
) -> None:
    """A library whose import kills the process (a crashing C extension) takes the loader down
    during the prewarm: the datum then runs exactly as a plain process would (here: it dies the
    same death), and datums of other targets still run."""
    crash_lib = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    (progs / "pw_crashlib.py").write_text(crash_lib)
    (progs / "pw_crash.py").write_text("import pw_crashlib\nprint('unreachable')\n")
    nowhere = str(tmp_path / "nowhere")
    assert warm.prewarm(module_run(progs, tmp_path / "p1", "pw_light"), nowhere)
    assert warm.prewarm(module_run(progs, tmp_path / "p2", "pw_crash"), nowhere)
    loader = next(iter(warm.pool.loading.values()))
    _wait(lambda: loader.proc.poll() is not None, "the loader to die importing")
    assert loader.proc.returncode == -11
    crash = warm.run(module_run(progs, tmp_path / "d1", "pw_crash"))
    assert crash == DatumOutcome(-11)  # what `python -m pw_crash` does on its own
    assert warm.run(module_run(progs, tmp_path / "d2", "pw_light")) == DatumOutcome(0)
    assert (tmp_path / "d2" / "out.log").read_text() == "light\n"
    # two zygotes died for this startup environment (the loader, then the first one preloading
    # for the datum): from then on its datums run as plain processes, as before prewarm existed
    assert warm.stats == {"warm": 0, "cold": 2, "zygotes": 2, "prewarmed": 2}
