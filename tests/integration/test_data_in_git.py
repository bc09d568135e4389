"""Data declared in git (specs/repos.yaml `data:`), end to end: real bare git remote, real
localpachd, `sync_once` in process (the agent's own step), tiny `sh` pipelines shaped like the
iris search (model = cross of C x gamma, test = one datum per model, select = one datum), fed
with the project's real C and gamma grids (11 x 7).

- the first sync writes the data in the same commit set as the new pipelines: one job each;
- inserting a C value at the TOP of the file re-runs exactly 7 + 7 + 1 datums (line files are
  named by content, not by line number), and so do appending and reordering (0 re-run);
- unchanged data writes no commit and costs one RPC per repo with data;
- a line or a file removed from git is deleted; a file someone else loaded is never deleted,
  and one in a line folder is reported; a file of ours changed by hand is restored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agentcore_gitops import sync
from helpers.gitops import GitOps
from helpers.jobs import newest_job, wait_jobs
from helpers.pfs import put, read_repo
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.sync import SyncResult

ROOT = Path(__file__).resolve().parents[2]
C_TEXT = (ROOT / "data/parameters/c_parameters.txt").read_text()
GAMMA_TEXT = (ROOT / "data/parameters/gamma_parameters.txt").read_text()
PIPELINES = ["model", "test", "select"]

REPOS = """\
repos:
  - name: parameters
    data:
      - path: data/parameters/c_parameters.txt
        to: /c_parameters.txt/
        split: lines
      - path: data/parameters/gamma_parameters.txt
        to: /gamma_parameters.txt/
        split: lines
  - name: notes
{notes}
"""
NOTES_ENTRY = """\
    data:
      - path: data/readme.txt"""

MODEL = """\
pipeline:
  name: model
transform:
  image: busybox:1.36.0
  cmd:
    - sh
    - -c
    - c=$(cat /pfs/c/c_parameters.txt/*); g=$(cat /pfs/gamma/gamma_parameters.txt/*);
      echo $c $g > /pfs/out/m_${c}_${g}
input:
  cross:
    - pfs: {name: c, repo: parameters, glob: /c_parameters.txt/*}
    - pfs: {name: gamma, repo: parameters, glob: /gamma_parameters.txt/*}
"""
TEST = """\
pipeline:
  name: test
transform:
  image: busybox:1.36.0
  cmd: ["sh", "-c", "for f in /pfs/model/*; do cp $f /pfs/out/$(basename $f).metric; done"]
input:
  pfs: {repo: model, glob: /*}
"""
SELECT = """\
pipeline:
  name: select
transform:
  image: busybox:1.36.0
  cmd: ["sh", "-c", "ls /pfs/test | wc -l > /pfs/out/count"]
input:
  pfs: {repo: test, glob: /}
"""


def _files(c_text: str = C_TEXT, notes: bool = True) -> dict[str, str | None]:
    return {"specs/repos.yaml": REPOS.format(notes=NOTES_ENTRY if notes else "    data: []"),
            "specs/pipelines/model.yaml": MODEL, "specs/pipelines/test.yaml": TEST,
            "specs/pipelines/select.yaml": SELECT,
            "data/parameters/c_parameters.txt": c_text,
            "data/parameters/gamma_parameters.txt": GAMMA_TEXT,
            "data/readme.txt": "declared in git\n"}


def _counts(client: Any) -> dict[str, tuple[int, int]]:
    """(processed, skipped) of each pipeline's newest job, all finished."""
    jobs = wait_jobs(client, PIPELINES, timeout=120)
    assert all(j.state == pps_pb2.JOB_SUCCESS for j in jobs.values()), jobs
    return {n: (j.data_processed, j.data_skipped) for n, j in jobs.items()}


def _commits(client: Any, repo: str) -> int:
    return len(list(client.list_commit(repo)))


@pytest.fixture
def synced(tmp_path: Path, localpachd: Any, pach_client: Any) -> tuple[GitOps, SyncResult]:
    gitops = GitOps(tmp_path)
    gitops.push(_files(), "specs and data")
    first = sync(gitops, localpachd.address, tmp_path)
    assert first.result == "applied", first.errors
    return gitops, first


def test_first_sync_runs_each_pipeline_once_then_top_insert_reruns_7_7_1(
        synced: tuple[GitOps, SyncResult], localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    gitops, first = synced
    assert _counts(pach_client) == {"model": (77, 0), "test": (77, 0), "select": (1, 0)}
    for name in PIPELINES:  # data and pipelines in one commit set: no job on empty inputs
        assert len(list(pach_client.list_job(pipeline_name=name))) == 1, name
    params = read_repo(pach_client, "parameters")
    assert params["/c_parameters.txt/0.031"] == "0.031\n" and len(params) == 18
    data = first.plan["data"]
    assert [r["repo"] for r in data["repos"]] == ["parameters", "notes"]
    model = next(x for x in data["reruns"] if x["pipeline"] == "model")
    assert model["direct"] and model["datums"] == 77

    gitops.push({"data/parameters/c_parameters.txt": "0.010\n" + C_TEXT}, "C 0.010 on top")
    second = sync(gitops, localpachd.address, tmp_path)
    assert second.result == "applied", second.errors
    [write] = [r for r in second.plan["data"]["repos"] if r["write"]]
    assert [(c["path"], c["action"]) for c in write["changes"]] == [
        ("/c_parameters.txt/0.010", "add")]
    reruns = {x["pipeline"]: x for x in second.plan["data"]["reruns"]}
    assert reruns["model"]["datums"] == 7 and not reruns["test"]["direct"]
    assert _counts(pach_client) == {"model": (7, 77), "test": (7, 77), "select": (1, 0)}

    before = _commits(pach_client, "parameters")
    gitops.push({"data/parameters/c_parameters.txt": "".join(
        reversed(("0.010\n" + C_TEXT).splitlines(keepends=True)))}, "reorder the C values")
    jobs = {n: newest_job(pach_client, n).job.id for n in PIPELINES}
    third = sync(gitops, localpachd.address, tmp_path)
    assert third.result == "unchanged", third.errors
    assert third.plan["data"]["in_sync"] and _commits(pach_client, "parameters") == before
    assert {n: newest_job(pach_client, n).job.id for n in PIPELINES} == jobs
    assert third.rpc_count <= 3 + 2  # observe (2) + one ListCommit per repo with data

    gitops.push({"data/parameters/c_parameters.txt": "0.010\n" + C_TEXT + "65536.000\n"},
                "append a C value")
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    assert _counts(pach_client) == {"model": (7, 84), "test": (7, 84), "select": (1, 0)}


def test_removed_files_are_deleted_but_user_files_never(
        synced: tuple[GitOps, SyncResult], localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    gitops, _ = synced
    _counts(pach_client)
    put(pach_client, "parameters", {"/c_parameters.txt/0000000000000000": "7\n"})
    put(pach_client, "notes", {"/mine.txt": "loaded by hand\n"})
    plan = sync(gitops, localpachd.address, tmp_path, dry_run=True)
    assert plan.result == "unchanged" and plan.plan["data"]["in_sync"]  # nothing of ours moved

    gitops.push({"data/parameters/c_parameters.txt": C_TEXT.replace("0.125\n", ""),
                 **{k: v for k, v in _files(notes=False).items() if k == "specs/repos.yaml"}},
                "drop C 0.125 and the notes file")
    result = sync(gitops, localpachd.address, tmp_path)
    assert result.result == "applied", result.errors
    params = read_repo(pach_client, "parameters")
    assert "/c_parameters.txt/0.125" not in params  # ours, gone from git: deleted
    assert params["/c_parameters.txt/0000000000000000"] == "7\n"  # the user's: kept
    assert read_repo(pach_client, "notes") == {"/mine.txt": "loaded by hand\n"}
    assert any("did not write" in w and "0000000000000000" in w for w in result.errors), \
        result.errors


def test_a_file_of_ours_changed_by_hand_is_restored(
        synced: tuple[GitOps, SyncResult], localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    gitops, _ = synced
    _counts(pach_client)
    put(pach_client, "parameters", {"/c_parameters.txt/0.031": "999\n"},
        delete=("/gamma_parameters.txt/4.000",))
    result = sync(gitops, localpachd.address, tmp_path)
    assert result.result == "applied", result.errors
    [write] = [r for r in result.plan["data"]["repos"] if r["write"]]
    assert sorted((c["path"], c["action"]) for c in write["changes"]) == [
        ("/c_parameters.txt/0.031", "restore"), ("/gamma_parameters.txt/4.000", "restore")]
    params = read_repo(pach_client, "parameters")
    assert params["/c_parameters.txt/0.031"] == "0.031\n" and len(params) == 18
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result == "unchanged" and again.rpc_count <= 3 + 2, again


def test_an_interrupted_write_is_finished_and_a_failed_one_is_redone(
        synced: tuple[GitOps, SyncResult], localpachd: Any, pach_client: Any,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.cluster import data as cluster_data
    from agent.cluster.datamodel import pending_description
    from agent.errors import Transient

    gitops, first = synced
    _counts(pach_client)
    # A write that stopped after its commit started (the agent was killed): the commit stays
    # open and every job downstream waits for it. The next sync writes into it and finishes it.
    pach_client.start_commit("parameters", "master",
                             description=pending_description(first.plan["source_id"]))
    gitops.push({"data/parameters/c_parameters.txt": "0.010\n" + C_TEXT}, "C 0.010 on top")
    result = sync(gitops, localpachd.address, tmp_path)
    assert result.result == "applied", result.errors
    head = next(iter(pach_client.inspect_commit(("parameters", "master"))))
    assert head.HasField("finished") and "pachsync.io/data-manifest" in head.description
    assert _counts(pach_client)["model"] == (7, 77)

    # A write that fails half-way finishes its commit without a manifest (no job left
    # waiting) and is done again by the next sync.
    real_fill = cluster_data._fill
    monkeypatch.setattr(cluster_data, "_fill", lambda *a: (_ for _ in ()).throw(
        Transient("writing files: injected fault")))
    gitops.push({"data/parameters/c_parameters.txt": "0.020\n0.010\n" + C_TEXT}, "C 0.020")
    failed = sync(gitops, localpachd.address, tmp_path)
    assert failed.result == "failed" and "injected fault" in failed.errors[0], failed
    head = next(iter(pach_client.inspect_commit(("parameters", "master"))))
    assert head.HasField("finished") and "data write failed" in head.description
    assert "/c_parameters.txt/0.020" not in read_repo(pach_client, "parameters")
    monkeypatch.setattr(cluster_data, "_fill", real_fill)
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result == "applied", again.errors
    assert read_repo(pach_client, "parameters")["/c_parameters.txt/0.020"] == "0.020\n"


def test_the_agent_process_writes_the_insert_and_logs_it(
        synced: tuple[GitOps, SyncResult], localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    gitops, _ = synced
    _counts(pach_client)
    sha = gitops.push({"data/parameters/c_parameters.txt": "0.010\n" + C_TEXT}, "C on top")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "agent", "--once", "--source", str(gitops.remote),
         "--pachd", localpachd.address, "--cache-dir", str(tmp_path / "cache"),
         "--log-format", "json"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PACH_CONFIG=str(tmp_path / "none.json")))
    assert proc.returncode == 0, proc.stderr
    [line] = [json.loads(x) for x in proc.stderr.splitlines() if '"event": "sync"' in x]
    assert line["commit"] == sha and line["result"] == "applied", line
    assert line["data"] == {"parameters": {"add": 1}}, line
    assert "data parameters (add 1)" in line["msg"], line
    assert _counts(pach_client) == {"model": (7, 77), "test": (7, 77), "select": (1, 0)}
