"""The project's own specs and data on a real localpachd: 77 models, incremental, reprocess.

One test, in phases, because each phase builds on the state the previous one left (and a
module-scoped fixture would be rebuilt by every xdist worker). The whole iris pipeline runs
twice (from empty, and after `update --reprocess` of model); every other phase runs few datums.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import python_pachyderm
from helpers.iris import PIPELINES, load_inputs, pipeline_request
from python_pachyderm.proto.v2.pps import pps_pb2


def job_of(client: Any, pipeline: str, job_id: str) -> Any:
    return next(iter(client.inspect_job(job_id, pipeline, wait=True)))


def wait_set(client: Any, job_id: str) -> dict[str, Any]:
    """Wait for every pipeline's job of a commit set; pipeline -> JobInfo."""
    client.wait_commit(job_id)
    return {j.job.pipeline.name: j for j in client.inspect_job(job_id, wait=True)}


def latest(client: Any, pipeline: str) -> Any:
    return job_of(client, pipeline, next(iter(client.list_job(pipeline))).job.id)


def counts(job: Any) -> tuple[str, int, int, int, int]:
    state = pps_pb2.JobState.Name(job.state)
    return (state, job.data_processed, job.data_skipped, job.data_failed, job.data_total)


def names(client: Any, repo: str) -> list[str]:
    return sorted(f.file.path for f in client.list_file((repo, "master"), "/"))


def metrics(client: Any) -> list[str]:
    """test's accuracy files (each has a _cv.txt beside it, its cross-validated accuracy)."""
    files = names(client, "test")
    found = [f for f in files if f.endswith("_metric.txt")]
    assert sorted(f.replace("_metric.txt", "_cv.txt") for f in found) == [
        f for f in files if f.endswith("_cv.txt")
    ] and len(files) == 2 * len(found)
    return found


# The shipped data: 40 models tie at test accuracy 1.0 (20 test rows); the tie-breaker, their
# cross-validated accuracy on the 80 training rows, keeps the 4 on the C x gamma = 0.5 ridge.
RIDGE = ["model_C8.0_G0.063", "model_C32.0_G0.016", "model_C128.0_G0.004", "model_C512.0_G0.001"]


def selection(client: Any) -> dict[str, Any]:
    raw = client.get_file(("select", "master"), "/selected.json").read()
    found: dict[str, Any] = json.loads(raw)
    return found


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    from localpachd.server import start

    server = start(data_dir=tmp_path / "pachd", port=0)
    try:
        yield python_pachyderm.Client(host=server.host, port=server.port)
    finally:
        server.stop()


@pytest.mark.slow
def test_iris_from_empty_then_incremental_then_reprocess(client: Any) -> None:
    # -- from empty: load data, create the four pipelines (as the agent does, one transaction)
    started = time.monotonic()
    load_inputs(client)
    with client.transaction():
        for name in PIPELINES:
            client.create_pipeline_from_request(pipeline_request(name))
    first = {name: latest(client, name) for name in PIPELINES}
    wall = time.monotonic() - started
    print(f"\nfull iris pipeline from empty: {wall:.1f}s wall")
    assert counts(first["split"]) == ("JOB_SUCCESS", 1, 0, 0, 1)
    assert counts(first["model"]) == ("JOB_SUCCESS", 77, 0, 0, 77)
    assert counts(first["test"]) == ("JOB_SUCCESS", 77, 0, 0, 77)
    assert counts(first["select"]) == ("JOB_SUCCESS", 1, 0, 0, 1)
    models = names(client, "model")
    assert len(models) == 77 and all(m.endswith(".pkl") for m in models)
    assert len(metrics(client)) == 77
    selected = selection(client)
    assert selected["considered"] == 77 and len(selected["tied"]) == 40
    assert selected["selected"] == RIDGE and selected["best_cv_accuracy"] == 0.975
    assert "/leaderboard.csv" in names(client, "select")

    # -- one more C value: exactly 7 new model datums (77 skipped), 7 new test datums
    with client.commit("parameters", "master") as c:
        client.put_file_bytes(c, "/c_parameters.txt/000000000000000b", b"4.0\n")
    jobs = wait_set(client, c.id)
    assert counts(jobs["model"]) == ("JOB_SUCCESS", 7, 77, 0, 84)
    assert counts(jobs["test"]) == ("JOB_SUCCESS", 7, 77, 0, 84)
    assert counts(jobs["select"]) == ("JOB_SUCCESS", 1, 0, 0, 1)
    added = sorted(set(names(client, "model")) - set(models))
    assert len(added) == 7 and all("_C4.0_" in m for m in added)
    assert len(metrics(client)) == 84
    assert selection(client)["selected"] == RIDGE  # C=4 ties on accuracy, loses on cv: stable
    assert len(selection(client)["tied"]) == 44

    # -- removing it deletes its 7 models (and their metrics); nothing else re-runs
    with client.commit("parameters", "master") as c:
        client.delete_file(c, "/c_parameters.txt/000000000000000b")
    jobs = wait_set(client, c.id)
    assert counts(jobs["model"]) == ("JOB_SUCCESS", 0, 77, 0, 77)
    assert names(client, "model") == models
    assert len(metrics(client)) == 77

    # -- update without reprocess: a new version, no datum runs again
    client.create_pipeline_from_request(
        pipeline_request("model", description="same code, new words", update=True)
    )
    job = latest(client, "model")
    assert job.pipeline_version == 2
    assert counts(job) == ("JOB_SUCCESS", 0, 77, 0, 77)
    assert counts(job_of(client, "test", job.job.id)) == ("JOB_SUCCESS", 0, 77, 0, 77)

    # -- update with reprocess: every model datum runs again
    client.create_pipeline_from_request(pipeline_request("model", update=True, reprocess=True))
    job = latest(client, "model")
    assert job.pipeline_version == 3
    assert counts(job) == ("JOB_SUCCESS", 77, 0, 0, 77)
    assert names(client, "model") == models
    assert counts(job_of(client, "select", job.job.id))[0] == "JOB_SUCCESS"
    assert selection(client)["selected"] == RIDGE  # refitted from scratch: the same selection
