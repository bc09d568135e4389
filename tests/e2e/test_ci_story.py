"""The whole CI half of the loop, with real git, the real `pachsync` CLI and a real localpachd:

1. a GitOps repo (bare "remote") whose pipelines `prep` and `score` run the stage image and
   `other` runs another image; the agent syncs it and 4 input files are processed;
2. Alice merges a stage change (a merge commit on main);
3. CI checks out that merge (detached, as Azure does), decides which images to rebuild with
   .ci/changed_paths.py (stages: yes, agent: no), "pushes" the image tagged with the sha
   (no registry here) and runs `pachsync bump-image ... --commit --push`;
4. meanwhile Bob pushed a description change of `other`: CI's first push is rejected, bump-image
   fetches, replays the bump on top, and the second push lands — one bump commit, both human
   commits kept, every update of main a fast-forward (no force push);
5. the bump commit touches only specs/ and says [skip ci], so CI would build nothing for it;
6. the agent pulls: `prep` and `score` are updated with reprocess and all their datums re-run,
   `other` is updated without reprocess and re-runs none; the next sync is a no-op.
Small `sh` pipelines keep it to a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.gitops import clone, git, seeded_remote, write_files
from helpers.jobs import is_finished
from helpers.wait import wait_for
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.sync import SyncOptions, SyncResult, sync_once

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "acr.example.io/iris-stages"
REPOS = "repos:\n  - name: raw\n    description: input files\n"
PIPELINE = """\
# {name}: runs the stage image; CI rewrites the tag below
pipeline:
  name: {name}
description: {description}
transform:
  image: {image}
  cmd:
    - sh
    - -c
    - {script}
input:
  pfs:
    repo: {input}
    glob: {glob}
"""
SPECS = {
    "prep": dict(image=f"{IMAGE}:seed000", input="raw", glob="/*",
                 script="for f in /pfs/raw/*; do tr a-z A-Z < $f > /pfs/out/$(basename $f); done"),
    "score": dict(image=f"'{IMAGE}:seed000'", input="prep", glob="/*",
                  script="for f in /pfs/prep/*; do wc -c < $f > /pfs/out/$(basename $f); done"),
    "other": dict(image="busybox:1.36.0", input="raw", glob="/",
                  script="ls /pfs/raw | wc -l > /pfs/out/count"),
}


def spec_text(name: str, description: str = "a stage") -> str:
    return PIPELINE.format(name=name, description=description, **SPECS[name])


def pachsync(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def jobs_of(client: Any, name: str) -> dict[str, Any]:
    return {j.job.id: j for j in client.list_job(pipeline_name=name)}


def wait_new_jobs(client: Any, before: dict[str, set[str]], names: list[str],
                  timeout: float = 90.0) -> dict[str, Any]:
    """The first job of each pipeline that was not there `before`, once all are finished."""
    new: dict[str, list[Any]] = {}

    def finished() -> dict[str, Any] | None:
        new.update({n: [j for i, j in jobs_of(client, n).items()
                        if i not in before.get(n, set())] for n in names})
        done = all(new[n] and all(map(is_finished, new[n])) for n in names)
        return {n: new[n][0] for n in names} if done else None

    return wait_for(finished, lambda: f"new jobs to finish: {new}", timeout, interval=0.1)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    files = {"specs/repos.yaml": REPOS, "stages/split.py": "print('v1')\n",
             **{f"specs/pipelines/{n}.yaml": spec_text(n) for n in SPECS}}
    return seeded_remote(tmp_path, files, "Initial GitOps repo",
                         config={"core.logAllRefUpdates": "always"})


def test_merge_build_bump_race_then_the_agent_reprocesses(
    remote: Path, tmp_path: Path, localpachd: Any, pach_client: Any
) -> None:
    def sync() -> SyncResult:
        return sync_once(SyncOptions(source=str(remote), pachd=localpachd.address,
                                     cache_dir=tmp_path / "agent-cache"))

    # 1. the agent applies the initial specs; 4 input files are processed
    first = sync()
    assert first.result == "applied", first.errors
    with pach_client.commit("raw", "master") as c:
        for i in range(4):
            pach_client.put_file_bytes(c, f"/f{i}.txt", f"file {i}\n".encode())
    jobs0 = wait_new_jobs(pach_client, {}, ["prep", "score", "other"])
    assert jobs0["prep"].data_processed == 4 and jobs0["score"].data_processed == 4
    before = {n: set(jobs_of(pach_client, n)) for n in SPECS}

    # 2. Alice merges a stage change
    alice = clone(remote, tmp_path / "alice")
    git(alice, "checkout", "-q", "-b", "faster-split")
    write_files(alice, {"stages/split.py": "print('v2')\n"})
    git(alice, "commit", "-q", "-am", "Make split faster", who="Alice")
    git(alice, "checkout", "-q", "main")
    git(alice, "merge", "-q", "--no-ff", "faster-split", "-m", "Merge PR 1: faster split",
        who="Alice")
    git(alice, "push", "-q", "origin", "main")
    merge_sha = git(alice, "rev-parse", "HEAD")

    # 3. CI checks out the merge and decides what to build
    ci = clone(remote, tmp_path / "ci")
    git(ci, "checkout", "-q", "--detach", merge_sha)
    changes = subprocess.run([sys.executable, str(ROOT / ".ci" / "changed_paths.py")], cwd=ci,
                             capture_output=True, text=True, check=True).stdout
    assert "variable=stages;isOutput=true]true" in changes
    assert "variable=agent;isOutput=true]false" in changes

    # 4. ... while Bob pushes a description change of `other`; then CI bumps and pushes
    bob = clone(remote, tmp_path / "bob")
    write_files(bob, {"specs/pipelines/other.yaml": spec_text("other", "counts the input files")})
    git(bob, "commit", "-q", "-am", "Describe other", who="Bob")
    git(bob, "push", "-q", "origin", "main")
    out = pachsync(ci, "bump-image", IMAGE, merge_sha, "--specs", "specs", "--commit", "--push",
                   "--branch", "main", "--backoff", "0", "--format", "json",
                   "--author-name", "pachsync CI", "--author-email", "ci@example.invalid")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["status"], report["pushed"], report["attempts"], report["replays"]) == (
        "changed", True, 2, 1)
    assert sorted(f["file"] for f in report["files"]) == ["specs/pipelines/prep.yaml",
                                                          "specs/pipelines/score.yaml"]
    subjects = git(remote, "log", "--format=%s", "main").splitlines()
    assert subjects[:2] == [f"Bump {IMAGE} to {merge_sha} [skip ci]", "Describe other"]
    assert "Merge PR 1: faster split" in subjects and "Make split faster" in subjects
    assert sum(s.startswith("Bump ") for s in subjects) == 1
    assert git(remote, "rev-parse", "main") == report["commit"]
    for line in git(remote, "reflog", "show", "--format=%H", "main").splitlines()[:-1]:
        git(remote, "merge-base", "--is-ancestor", f"{line}^", line)  # fast-forwards only

    # 5. the bump builds nothing: only specs/, [skip ci], and no image source changed
    bump_files = git(remote, "show", "--name-only", "--format=", "main").splitlines()
    assert bump_files == ["specs/pipelines/prep.yaml", "specs/pipelines/score.yaml"]
    prep_text = git(remote, "show", "main:specs/pipelines/prep.yaml")
    assert prep_text == spec_text("prep").replace("seed000", merge_sha).rstrip("\n")
    git(ci, "fetch", "-q", "origin")
    bump_changes = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "changed_paths.py"), "--base", "origin/main^1",
         "--head", "origin/main"], cwd=ci, capture_output=True, text=True, check=True).stdout
    assert bump_changes.count("]false") == 2

    # 6. the agent pulls and reprocesses exactly the pipelines that run the image
    second = sync()
    assert second.result == "applied", second.errors
    assert second.commit == report["commit"]
    assert second.actions == {"prep": "update+reprocess", "score": "update+reprocess",
                              "other": "update"}
    new = wait_new_jobs(pach_client, before, ["prep", "score"])
    for name in ("prep", "score"):
        job = new[name]
        assert pps_pb2.JobState.Name(job.state) == "JOB_SUCCESS"
        assert (job.data_processed, job.data_skipped, job.data_total) == (4, 0, 4), name
    other_new = [j for i, j in jobs_of(pach_client, "other").items() if i not in before["other"]]
    assert sum(j.data_processed for j in other_new) == 0  # no reprocess: nothing re-ran
    info = next(iter(pach_client.inspect_pipeline("prep", details=True)))
    assert info.details.transform.image == f"{IMAGE}:{merge_sha}"
    third = sync()
    assert third.result == "unchanged" and third.out_of_sync == 0, third
