"""RestartDatum under the warm runtime: `kill_datum` kills exactly one running datum.

Real zygotes and datum processes: first the runtime alone (two datums of one job, one killed),
then RestartDatum through a real localpachd running `python3 -m MODULE` datums under "auto".
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers.pachd import in_process_client
from lpd_pps_helpers import counts, last_job, pfs, put, read_repo, state
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.runtime import DatumOutcome, DatumRun
from localpachd.runtime_warm import WarmRuntime

# The first run of the datum hangs, and fails if nobody kills it; any later run succeeds at once.
HANG_ONCE = """
    import os, sys, time
    count = os.path.join(os.environ["COUNT"], "n")
    with open(count, "a") as f:
        f.write("run\\n")
    print("started", flush=True)
    if open(count).read().count("run") == 1:
        time.sleep(60)
        sys.exit(3)
    if len(sys.argv) > 1:
        with open(os.path.join(sys.argv[1], "done"), "w") as f:
            f.write("ok\\n")
"""


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "pachsync_hang_once.py").write_text(textwrap.dedent(HANG_ONCE))
    return lib


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_bytes()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_kill_datum_kills_only_that_datum(module_dir: Path, tmp_path: Path) -> None:
    warm = WarmRuntime()

    def one(datum: str, count: Path) -> DatumOutcome:
        cwd = tmp_path / datum
        cwd.mkdir()
        count.mkdir(exist_ok=True)
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(module_dir), "COUNT": str(count),
               "PACH_JOB_ID": "job1", "PACH_DATUM_ID": datum}
        run = DatumRun(argv=(sys.executable, "-m", "pachsync_hang_once"), env=env, cwd=cwd,
                       stdin=None, stdout_path=cwd / "log", stderr_path=cwd / "log",
                       timeout=None if datum == "doomed" else 4)
        return warm.run(run)

    try:
        with ThreadPoolExecutor(2) as pool:
            doomed = pool.submit(one, "doomed", tmp_path / "c1")
            survivor = pool.submit(one, "survivor", tmp_path / "c2")
            _wait_for(tmp_path / "doomed" / "log")
            _wait_for(tmp_path / "survivor" / "log")
            warm.kill_datum("job1", "other")  # no such datum: nothing happens
            warm.kill_datum("job1", "doomed")
            assert doomed.result() == DatumOutcome(returncode=-signal.SIGKILL)
        assert survivor.result() == DatumOutcome(returncode=-signal.SIGKILL, timed_out=True)
        assert warm.stats["warm"] == 2 and warm.stats["cold"] == 0
    finally:
        warm.close()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    with in_process_client(tmp_path / "pachd", runtime="auto") as client:
        yield client


def test_restart_datum_under_the_warm_runtime(client: Any, module_dir: Path, tmp_path: Path
                                              ) -> None:
    count = tmp_path / "count"
    count.mkdir()
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    transform = pps_pb2.Transform(
        cmd=["python3", "-m", "pachsync_hang_once", "/pfs/out"],
        env={"COUNT": str(count), "PYTHONPATH": str(module_dir)},
    )
    client.create_pipeline("hang", transform=transform, input=pfs("data", "/*"), datum_tries=1)
    job_id = next(iter(client.list_job("hang"))).job.id
    _wait_for(count / "n")
    client.restart_datum("hang", job_id, data_filters=["/a"])
    job = last_job(client, "hang")
    assert state(job) == "JOB_SUCCESS" and counts(job) == (1, 0, 0, 1)
    assert (count / "n").read_text() == "run\nrun\n"
    assert read_repo(client, "hang") == {"/done": "ok\n"}
