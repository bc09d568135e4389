"""Pipelines on a real localpachd give byte-identical outputs under the warm and plain runtimes.

A small pipeline of Python-module datums runs on two servers (runtime "subprocess" and
"warm"): output files, datum counts and job states must be equal, and the warm server must
really have forked its datums. The slow test runs the whole iris search on the warm runtime
and compares every model, metric and selection file with `bench.baseline_iris` (the same
stage code in one plain process).
"""

from __future__ import annotations

import contextlib
import io
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import python_pachyderm
from helpers.iris import PIPELINES, load_inputs, pipeline_request
from helpers.jobs import newest_job
from helpers.pfs import read_repo_bytes
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.server import start

STAGE = """
    import hashlib, json, os, sys
    from pathlib import Path
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        data = f.read_bytes()
        record = {"name": f.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                  "greeting": os.environ.get("GREETING"), "argv0": Path(sys.argv[0]).name,
                  "has_datum_id": bool(os.environ.get("PACH_DATUM_ID"))}
        (out / (f.name + ".json")).write_text(json.dumps(record, sort_keys=True))
        print("wrote", f.name)
    print("stage done", file=sys.stderr)
"""


@contextlib.contextmanager
def _server(tmp: Path, runtime: str) -> Iterator[tuple[Any, Any]]:
    server = start(data_dir=tmp / f"pachd-{runtime}", port=0, runtime=runtime)
    try:
        yield server, python_pachyderm.Client(host=server.host, port=server.port)
    finally:
        server.stop()


def _wait(client: Any, pipeline: str, timeout: float = 240) -> Any:
    """The pipeline's newest job, waited until finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = newest_job(client, pipeline)
        if newest is not None:
            return next(iter(client.inspect_job(newest.job.id, pipeline, wait=True)))
        time.sleep(0.1)
    raise AssertionError(f"no job of {pipeline} within {timeout}s")


def _runtime_stats(server: Any) -> dict[str, int]:
    """Warm/cold datum counts of the server's runtime (0s for the subprocess runtime)."""
    engine = getattr(server.ctx, "pps_engine", None)
    return dict(getattr(getattr(engine, "runtime", None), "stats", {}))


def _small_pipeline(tmp: Path, runtime: str, mods: Path) -> dict[str, Any]:
    with _server(tmp, runtime) as (server, client):
        client.create_repo("nums")
        with client.commit("nums", "master") as c:
            for i in range(6):
                client.put_file_bytes(c, f"/n{i}.txt", f"{i * i}\n".encode() * (i + 1))
        transform = pps_pb2.Transform(
            cmd=["python3", "-m", "pachsync_warm_stage", "/pfs/nums", "/pfs/out"],
            env={"PYTHONPATH": str(mods), "GREETING": "hello"})
        client.create_pipeline("stage", transform=transform,
                               input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="nums", glob="/*")))
        job = _wait(client, "stage")
        outputs = read_repo_bytes(client, "stage")
        return {"state": pps_pb2.JobState.Name(job.state), "outputs": outputs,
                "counts": (job.data_processed, job.data_skipped, job.data_failed, job.data_total),
                "stats": _runtime_stats(server)}


def test_small_python_pipeline_is_identical_under_both_runtimes(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "pachsync_warm_stage.py").write_text(textwrap.dedent(STAGE))
    cold = _small_pipeline(tmp_path, "subprocess", mods)
    warm = _small_pipeline(tmp_path, "warm", mods)
    assert cold["state"] == warm["state"] == "JOB_SUCCESS"
    assert cold["counts"] == warm["counts"] == (6, 0, 0, 6)
    assert len(warm["outputs"]) == 6
    assert warm["outputs"] == cold["outputs"]
    assert warm["stats"]["warm"] == 6 and warm["stats"]["cold"] == 0  # all forked warm
    assert cold["stats"] == {}  # the subprocess runtime has no warm counters


@pytest.mark.slow
def test_iris_search_on_the_warm_runtime_matches_one_plain_process(tmp_path: Path) -> None:
    from bench.baseline_iris import main as baseline

    with contextlib.redirect_stdout(io.StringIO()):
        baseline(tmp_path / "baseline")
    expected = {name: {p.name: p.read_bytes() for p in (tmp_path / "baseline" / name).iterdir()}
                for name in ("model", "test", "select")}
    with _server(tmp_path, "warm") as (server, client):
        load_inputs(client)
        for name in PIPELINES:
            client.create_pipeline_from_request(pipeline_request(name))
        jobs = {name: _wait(client, name, timeout=280) for name in PIPELINES}
        while jobs["test"].data_total < 77 or jobs["select"].data_processed < 1:
            jobs = {name: _wait(client, name, timeout=280) for name in ("test", "select")} | {
                "model": jobs["model"], "split": jobs["split"]}
        got = {name: {Path(k).name: v for k, v in read_repo_bytes(client, name).items()}
               for name in ("model", "test", "select")}
        stats = _runtime_stats(server)
    assert [pps_pb2.JobState.Name(j.state) for j in jobs.values()] == ["JOB_SUCCESS"] * 4
    assert len(got["model"]) == 77 and len(got["test"]) == 2 * 77  # _metric.txt and _cv.txt
    assert got == expected
    # split and select: one fork each; model and test batch: one fork per worker slot (2 each)
    assert stats["cold"] == 0 and stats["warm"] == 1 + 2 + 2 + 1
