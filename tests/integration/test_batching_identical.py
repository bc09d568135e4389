"""The hyperparameter search gives byte-identical results with and without datum batching.

The real search (specs/pipelines, the real data of data/ loaded as tests/helpers/iris.py loads
it) runs on two real localpachd servers: once with the specs as they are (`model` and `test` set
`transform.datum_batching: true`, so one process per worker slot works through its datums) and
once with the field removed from every loaded spec (a process per datum; the job logs show
which ran). Every file of the `model`, `test` and `select` output repos (path and content) must
be equal, all 77 + 77 datums processed. The full grid on purpose (~10 s a search here):
batching differs from one process per datum only in what a process keeps between its datums
(scikit-learn's and joblib's per-process state, anything the stage might cache), so the more
datums one process serves, the more such state could show.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import python_pachyderm
import yaml
from helpers.iris import PIPELINES, ROOT, load_inputs
from helpers.jobs import state, wait_jobs
from helpers.pfs import read_repo_bytes

from localpachd.batching import START_LINE
from localpachd.server import start

OUTPUTS = ("model", "test", "select")
BATCHING = ("model", "test")  # the specs that set datum_batching


def _specs(batching: bool) -> list[dict[str, Any]]:
    """specs/pipelines as loaded; without `batching`, `datum_batching` removed from each."""
    docs = [yaml.safe_load((ROOT / "specs" / "pipelines" / f"{n}.yaml").read_text())
            for n in PIPELINES]
    for doc in docs:
        if not batching:
            doc["transform"].pop("datum_batching", None)
    return docs


@contextlib.contextmanager
def _client(data_dir: Path) -> Iterator[Any]:
    server = start(data_dir=data_dir, host="127.0.0.1", port=0)
    try:
        yield python_pachyderm.Client(host=server.host, port=server.port)
    finally:
        server.stop()


def _user_code_starts(client: Any, pipeline: str, job_id: str) -> int:
    """How often the job started a batching user process (its master log says so each time)."""
    lines = client.get_pipeline_logs(pipeline, master=True)
    return sum(START_LINE in line.message for line in lines if line.job_id == job_id)


def _search(data_dir: Path, batching: bool) -> dict[str, dict[str, bytes]]:
    """Runs the search from empty; returns every output file of model, test and select."""
    with _client(data_dir) as client:
        load_inputs(client)
        for doc in _specs(batching):
            client.create_pipeline_from_request(python_pachyderm.parse_dict_pipeline_spec(doc))
        details = {n: next(iter(client.inspect_pipeline(n, details=True))).details
                   for n in BATCHING}
        assert all(d.transform.datum_batching is batching for d in details.values())
        jobs = wait_jobs(client, list(PIPELINES), timeout=600)
        assert {n: state(j) for n, j in jobs.items()} == dict.fromkeys(PIPELINES, "JOB_SUCCESS")
        for name in BATCHING:
            assert (jobs[name].data_processed, jobs[name].data_failed) == (77, 0), name
            starts = _user_code_starts(client, name, jobs[name].job.id)
            # batching really ran: one start per worker slot (parallelism 2), no restart
            assert (1 <= starts <= 2) if batching else starts == 0, (name, starts)
        return {repo: read_repo_bytes(client, repo) for repo in OUTPUTS}


@pytest.mark.slow
def test_models_metrics_and_selection_are_byte_identical_with_and_without_batching(
        tmp_path: Path) -> None:
    batched = _search(tmp_path / "batched", batching=True)
    unbatched = _search(tmp_path / "unbatched", batching=False)
    assert len([p for p in batched["model"] if p.endswith(".pkl")]) == 77
    assert len(batched["test"]) == 2 * 77  # <model>_metric.txt and <model>_cv.txt
    assert batched["select"], "select wrote nothing"
    for repo in OUTPUTS:
        assert sorted(batched[repo]) == sorted(unbatched[repo]), repo
        differing = [p for p in batched[repo] if batched[repo][p] != unbatched[repo][p]]
        assert not differing, f"{repo}: {differing[:5]}"
