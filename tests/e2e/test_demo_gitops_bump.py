"""The GitOps loop on the real iris pipelines: git remote -> sync_once -> image bump -> reprocess.

A bare remote seeded with a copy of specs/ and data/ (repos.yaml declares the data), the
in-process localpachd. The first sync creates everything, writes the data in the same commit set
and the search runs once; pushing a new image tag for every stage makes the next sync update all
four pipelines with reprocess, and every datum re-runs (1 + 77 + 77 + 1); the sync after that is
a no-op of at most 3 RPCs plus one per repo with declared data.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers.gitops import GitOps
from helpers.jobs import wait_jobs
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.sync import SyncOptions, sync_once

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["split", "model", "test", "select"]


@pytest.mark.slow
def test_image_bump_in_git_reprocesses_every_datum(localpachd: Any, pach_client: Any,
                                                   tmp_path: Path) -> None:
    ops = GitOps(tmp_path)
    shutil.copytree(ROOT / "specs", ops.work / "specs")
    shutil.copytree(ROOT / "data", ops.work / "data")
    ops.push({}, "specs")
    opts = SyncOptions(source=str(ops.remote), pachd=localpachd.address, cache_dir=tmp_path / "c")

    first = sync_once(opts)
    assert first.result == "applied" and set(first.actions.values()) == {"create"}, first.errors
    before = wait_jobs(pach_client, NAMES, timeout=200)
    assert before["model"].data_total == 77 and before["select"].state == pps_pb2.JOB_SUCCESS
    assert all(len(list(pach_client.list_job(pipeline_name=n))) == 1 for n in NAMES)

    for path in (ops.work / "specs" / "pipelines").glob("*.yaml"):
        path.write_text(path.read_text().replace("iris-stages:0.1.0", "iris-stages:0.2.0"))
    sha = ops.push({}, "bump iris-stages to 0.2.0")

    bumped = sync_once(opts)
    assert bumped.result == "applied" and bumped.commit == sha, bumped.errors
    assert bumped.actions == dict.fromkeys(NAMES, "update+reprocess")
    datums = {p["name"]: p["datums"] for p in bumped.plan["pipelines"]}
    assert datums == {"split": 1, "model": 77, "test": 77, "select": 1}
    after = wait_jobs(pach_client, NAMES, timeout=200,
                      after={n: before[n].job.id for n in NAMES})
    assert {n: (j.data_processed, j.data_skipped) for n, j in after.items()} == {
        "split": (1, 0), "model": (77, 0), "test": (77, 0), "select": (1, 0)}
    assert after["select"].state == pps_pb2.JOB_SUCCESS

    again = sync_once(opts)
    assert again.result == "unchanged" and again.rpc_count <= 3 + 2  # + raw_data, parameters
