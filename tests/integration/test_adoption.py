"""Adoption (real localpachd, real bare git remote, `pachsync agent --once` as a process): a
pipeline git names that no source ever managed (created by hand with `pachctl create pipeline
-f`) is shown as `adopt` with its field diff and whether it would reprocess, left alone without
--adopt (never blocking the rest), and taken over with `agent --adopt`, `apply --adopt` or the
spec annotation `pachsync.io/adopt: "true"`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentcore_gitops import COUNT, make_gitops, spec_files
from helpers.gitops import GitOps
from ownership_gitops import agent_once, by_hand, cli, live

from agent.plan.normalize import ANN_MANAGED_BY

# `count` as someone created it by hand before pachsync: another image and description.
HAND_MADE = {
    "description": "made by hand",
    "transform": {"image": "busybox:1.35.0",
                  "cmd": ["sh", "-c", "ls /pfs/copy | wc -l > /pfs/out/count"]},
    "input": {"pfs": {"repo": "copy", "glob": "/"}},
}


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    return make_gitops(tmp_path, spec_files(count=False))  # type: ignore[arg-type]


def _hand_made_count(client: Any, gitops: GitOps, address: str, tmp_path: Path,
                     extra: dict[str, str | None] | None = None) -> None:
    """`copy` from git (so count's input exists), then `count` created by hand, then git
    names `count` too (with `extra` files in the same commit)."""
    assert agent_once(str(gitops.remote), address, tmp_path / "cache").code == 0
    by_hand(client, "count", HAND_MADE, update=False)
    assert ANN_MANAGED_BY not in live(client, "count")[1]
    gitops.push({"specs/pipelines/count.yaml": COUNT.format(image="busybox:1.36.0"),
                 **(extra or {})}, "count in git")


def _plan(gitops: GitOps, address: str, tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    ran = cli("plan", "--source", str(gitops.remote), "--cache-dir", str(tmp_path / "plan"),
              "--pachd", address, "--exit-code", "--format", "json", *flags)
    return ran.code, json.loads(ran.out)


def test_foreign_pipeline_is_left_alone_without_adopt_and_adopted_with_it(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    copy = spec_files()["specs/pipelines/copy.yaml"].replace("copies every file", "copies")
    _hand_made_count(pach_client, gitops, localpachd.address, tmp_path,
                     {"specs/pipelines/copy.yaml": copy})
    code, plan = _plan(gitops, localpachd.address, tmp_path)
    count = {p["name"]: p for p in plan["pipelines"]}["count"]
    assert code == 1 and not plan["in_sync"] and not plan["conflicts"]
    assert count["action"] == "adopt" and not count["will_apply"] and count["reprocess"]
    assert {(d["path"], d["live"], d["git"]) for d in count["diffs"]} == {
        ("description", "made by hand", "counts copied files"),
        ("transform.image", "busybox:1.35.0", "busybox:1.36.0")}
    assert "--adopt" in count["reason"] and "1 to adopt" in plan["summary"]

    left = agent_once(str(gitops.remote), localpachd.address, tmp_path / "cache")
    assert left.code == 0, left.err  # reported, not an error: nothing else was blocked
    assert live(pach_client, "copy")[0] == "copies"
    assert live(pach_client, "count")[0] == "made by hand"
    assert ANN_MANAGED_BY not in live(pach_client, "count")[1]

    taken = agent_once(str(gitops.remote), localpachd.address, tmp_path / "cache", "--adopt")
    assert taken.code == 0, taken.err
    description, annotations, version = live(pach_client, "count")
    assert description == "counts copied files" and version == 2
    assert annotations[ANN_MANAGED_BY] == live(pach_client, "copy")[1][ANN_MANAGED_BY]
    assert annotations["pachsync.io/applied-version"] == "2"
    code, plan = _plan(gitops, localpachd.address, tmp_path)
    assert code == 0 and plan["in_sync"], plan


def test_apply_adopt_and_the_adopt_annotation_take_over(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    _hand_made_count(pach_client, gitops, localpachd.address, tmp_path)
    base = ["--source", str(gitops.remote), "--cache-dir", str(tmp_path / "c"), "--pachd",
            localpachd.address]
    dry = cli("apply", *base, "--dry-run")
    assert dry.code == 0 and "adopt with reprocess" in dry.out and "(needs --adopt)" in dry.out
    annotated = COUNT.format(image="busybox:1.36.0").replace(
        "description:", 'metadata:\n  annotations:\n    pachsync.io/adopt: "true"\ndescription:')
    gitops.push({"specs/pipelines/count.yaml": annotated}, "count: adopt")
    applied = cli("apply", *base)
    assert applied.code == 0, applied.out + applied.err
    description, annotations, _ = live(pach_client, "count")
    assert description == "counts copied files" and annotations["pachsync.io/adopt"] == "true"
    assert ANN_MANAGED_BY in annotations


def test_apply_adopt_flag(gitops: GitOps, localpachd: Any, pach_client: Any,
                          tmp_path: Path) -> None:
    _hand_made_count(pach_client, gitops, localpachd.address, tmp_path)
    base = ["--source", str(gitops.remote), "--cache-dir", str(tmp_path / "c"), "--pachd",
            localpachd.address]
    applied = cli("apply", *base, "--adopt")
    assert applied.code == 0, applied.out + applied.err
    assert "adopt with reprocess" in applied.out
    assert live(pach_client, "count")[0] == "counts copied files"
