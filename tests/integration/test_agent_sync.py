"""sync_once end to end: real git remote (bare repo), real localpachd, real python-pachyderm.

Covers the issue's "done when" list with tiny `sh` pipelines: first sync creates everything and
converges; an image change reprocesses every datum; a parallelism/description change re-runs
none; removed specs are pruned only with --prune; hand changes are drift and get reverted; a bad
commit is rejected with file:line while the cluster keeps the last good state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentcore_gitops import make_gitops, spec_files, sync
from helpers.gitops import GitOps
from helpers.jobs import wait_jobs
from helpers.pfs import put

from agent.plan.normalize import ANN_MANAGED_BY, ANN_SOURCE_COMMIT, ANN_SPEC_HASH
from agent.sync import SyncResult


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    return make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]


def _annotations(client: Any, name: str) -> dict[str, str]:
    info = next(iter(client.inspect_pipeline(name, details=True)))
    return dict(info.details.metadata.annotations)


@pytest.fixture
def synced(gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> SyncResult:
    """First sync applied and three input files processed by both pipelines."""
    first = sync(gitops, localpachd.address, tmp_path)
    put(pach_client, "raw", {f"/f{i}.txt": f"{i}\n".encode() for i in range(3)})
    wait_jobs(pach_client, ["copy", "count"])
    return first


def test_first_sync_creates_and_second_is_a_cheap_noop(
        synced: SyncResult, gitops: GitOps, localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    assert synced.result == "applied", synced.errors
    assert synced.actions == {"copy": "create", "count": "create"}
    assert synced.error_kind is None and synced.out_of_sync == 0
    assert {r.repo.name for r in pach_client.list_repo()} >= {"raw", "copy", "count"}
    ann = _annotations(pach_client, "copy")
    assert ann[ANN_SOURCE_COMMIT] == synced.commit
    assert ann[ANN_MANAGED_BY].endswith("#main:specs") and len(ann[ANN_SPEC_HASH]) == 20
    jobs = wait_jobs(pach_client, ["copy"])
    assert jobs["copy"].data_total == 3
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result == "unchanged", again
    assert again.actions == {"copy": "unchanged", "count": "unchanged"}
    assert again.rpc_count <= 3
    assert again.commit == synced.commit


def test_image_change_reprocesses_every_datum(
        synced: SyncResult, gitops: GitOps, localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    gitops.push(spec_files(image="busybox:1.37.0"), "bump image")
    res = sync(gitops, localpachd.address, tmp_path)
    assert res.result == "applied", res.errors
    assert res.actions == {"copy": "update+reprocess", "count": "update+reprocess"}
    by_name = {p["name"]: p for p in res.plan["pipelines"]}
    assert by_name["copy"]["datums"] == 3
    assert "transform.image" in by_name["copy"]["reprocess_reason"]
    jobs = wait_jobs(pach_client, ["copy", "count"])
    assert (jobs["copy"].data_processed, jobs["copy"].data_skipped) == (3, 0)
    assert jobs["count"].data_processed == 1
    assert sync(gitops, localpachd.address, tmp_path).result == "unchanged"


@pytest.mark.parametrize("change", ["parallelism", "description"])
def test_non_transform_change_updates_without_reprocess(
        change: str, synced: SyncResult, gitops: GitOps, localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    files = spec_files(parallelism=2)
    if change == "description":
        files = spec_files()
        files["specs/pipelines/copy.yaml"] = files["specs/pipelines/copy.yaml"].replace(
            "copies every file", "copies every file, documented")
    gitops.push(files, f"change {change}")  # type: ignore[arg-type]
    res = sync(gitops, localpachd.address, tmp_path)
    assert res.actions == {"copy": "update", "count": "unchanged"}, res.errors
    jobs = wait_jobs(pach_client, ["copy"])
    assert (jobs["copy"].data_processed, jobs["copy"].data_skipped) == (0, 3)
    assert sync(gitops, localpachd.address, tmp_path).result == "unchanged"


def test_removed_spec_is_pruned_only_with_prune(
        synced: SyncResult, gitops: GitOps, localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    gitops.push({"specs/pipelines/count.yaml": None}, "drop count")
    kept = sync(gitops, localpachd.address, tmp_path)
    assert kept.result == "unchanged" and kept.actions["count"] == "orphan"
    assert kept.out_of_sync == 1
    assert "count" in {p.pipeline.name for p in pach_client.list_pipeline()}
    pruned = sync(gitops, localpachd.address, tmp_path, prune=True)
    assert pruned.result == "applied" and pruned.actions["count"] == "delete"
    assert {p.pipeline.name for p in pach_client.list_pipeline()} == {"copy"}
    assert "raw" in {r.repo.name for r in pach_client.list_repo()}  # input repos stay


def test_empty_desired_state_never_prunes_without_allow_empty(
        synced: SyncResult, gitops: GitOps, localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    gitops.push({"specs/pipelines/count.yaml": None, "specs/pipelines/copy.yaml": None},
                "remove everything")
    guarded = sync(gitops, localpachd.address, tmp_path, prune=True)
    assert guarded.result == "unchanged" and any("--allow-empty" in e for e in guarded.errors)
    assert len(list(pach_client.list_pipeline())) == 2
    allowed = sync(gitops, localpachd.address, tmp_path, prune=True, allow_empty=True)
    assert allowed.actions == {"copy": "delete", "count": "delete"}
    assert list(pach_client.list_pipeline()) == []


def test_bad_commit_is_rejected_with_file_and_line_then_next_commit_syncs(
        synced: SyncResult, gitops: GitOps, localpachd: Any, pach_client: Any,
        tmp_path: Path) -> None:
    bad = spec_files(image="busybox:1.37.0")
    bad["specs/pipelines/copy.yaml"] = bad["specs/pipelines/copy.yaml"].replace(
        "    glob: /*\n", "    glob: /*\n    bogus_key: 1\n")
    sha = gitops.push(bad, "typo")  # type: ignore[arg-type]
    res = sync(gitops, localpachd.address, tmp_path)
    assert res.result == "invalid" and res.error_kind == "SpecInvalid" and res.commit == sha
    # line 14 of copy.yaml is the `bogus_key: 1` the commit added
    assert any(e.startswith("specs/pipelines/copy.yaml:14:") and "bogus_key" in e
               for e in res.errors), res.errors
    assert _annotations(pach_client, "copy")[ANN_SOURCE_COMMIT] == synced.commit
    good = gitops.push(spec_files(image="busybox:1.37.0"), "fix typo")
    fixed = sync(gitops, localpachd.address, tmp_path)
    assert fixed.result == "applied" and fixed.commit == good
    assert _annotations(pach_client, "copy")[ANN_SOURCE_COMMIT] == good
