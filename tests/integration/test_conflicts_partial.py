"""Conflicts are per pipeline (real localpachd, real bare git remote, `pachsync agent --once` as a
process): a pipeline owned by another source, or a name taken by a plain repo, is skipped with
the pipelines that read it; every other change is applied in the same run; the result is
`partial` with a non-zero exit code, and `plan --exit-code` says 1 whenever anything differs
(conflicts, orphans, adoptions, drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentcore_gitops import make_gitops, spec_files, sync
from helpers.gitops import GitOps
from ownership_gitops import agent_once, by_hand, cli, live, names, spec_of

from agent.plan.normalize import ANN_MANAGED_BY

OTHER = "https://git.example.com/other/specs#main:specs"
TAIL = """\
pipeline:
  name: tail
description: reads count
transform:
  image: busybox:1.36.0
  cmd: ["sh", "-c", "cp /pfs/count/count /pfs/out/"]
input:
  pfs:
    repo: count
    glob: /
"""


def _copy(description: str) -> str:
    return spec_files()["specs/pipelines/copy.yaml"].replace("copies every file", description)


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    return make_gitops(tmp_path, spec_files(count=False))  # type: ignore[arg-type]


def _count_taken(how: str, client: Any, gitops: GitOps, address: str, tmp_path: Path) -> None:
    """git holds `copy` (applied); `count` is taken by another source's pipeline or by a plain
    repo; then git names `count` and `tail` (which reads count) and edits copy's description."""
    assert sync(gitops, address, tmp_path).result == "applied"
    if how == "other-source":
        spec = {"transform": {"image": "busybox:1", "cmd": ["true"]},
                "input": {"pfs": {"repo": "copy", "glob": "/"}}}
        by_hand(client, "count", spec, update=False, annotations={ANN_MANAGED_BY: OTHER})
    elif how == "other-source-then-by-hand":
        spec = {"transform": {"image": "busybox:1", "cmd": ["true"]},
                "input": {"pfs": {"repo": "copy", "glob": "/"}}}
        by_hand(client, "count", spec, update=False, annotations={ANN_MANAGED_BY: OTHER})
        by_hand(client, "count", {**spec_of(client, "count"), "description": "x"}, update=True)
    else:
        client.create_repo("count")
    files = {**spec_files(), "specs/pipelines/copy.yaml": _copy("changed in git"),
             "specs/pipelines/tail.yaml": TAIL}
    gitops.push(files, "count, tail, copy description")  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["other-source", "other-source-then-by-hand", "plain-repo"])
def test_a_conflict_does_not_stop_an_unrelated_change(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path, how: str) -> None:
    _count_taken(how, pach_client, gitops, localpachd.address, tmp_path)
    before = names(pach_client)
    ran = agent_once(str(gitops.remote), localpachd.address, tmp_path / "agent-cache")
    assert ran.code == 2, ran.err
    assert "partial" in ran.err and "count" in ran.err
    assert live(pach_client, "copy")[0] == "changed in git"  # applied in the same run
    assert names(pach_client) == before  # tail (reads count) skipped, count untouched
    if how != "plain-repo":
        assert live(pach_client, "count")[1].get(ANN_MANAGED_BY, "") in (OTHER, "")

    result = sync(gitops, localpachd.address, tmp_path)
    assert result.result == "partial" and result.error_kind == "Conflict", result
    assert result.conflicts == 1 and result.out_of_sync == 2
    assert result.actions == {"copy": "unchanged", "count": "conflict", "tail": "create"}
    assert any(e.startswith("count: ") for e in result.errors)
    assert any(e.startswith("tail: create skipped: it reads count") for e in result.errors)
    tail = {p["name"]: p for p in result.plan["pipelines"]}["tail"]
    assert tail["blocked_by"] == ["count"] and not tail["will_apply"]


def test_apply_applies_the_rest_and_exits_non_zero(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    _count_taken("other-source", pach_client, gitops, localpachd.address, tmp_path)
    base = ["--source", str(gitops.remote), "--cache-dir", str(tmp_path / "c"), "--pachd",
            localpachd.address]
    ran = cli("apply", *base)
    assert ran.code == 2, ran.out + ran.err
    assert "Partial: 2 pipeline(s) skipped because of conflicts (count, tail)" in ran.out
    assert "1 pipeline(s) created/updated" in ran.out
    assert live(pach_client, "copy")[0] == "changed in git"
    as_json = cli("apply", *base, "--format", "json")
    data = json.loads(as_json.out)
    assert as_json.code == 2 and data["result"] == "partial"
    assert data["skipped"] == ["count", "tail"]


def _plan_exit(gitops: GitOps, address: str, tmp_path: Path, *flags: str) -> tuple[int, Any]:
    ran = cli("plan", "--source", str(gitops.remote), "--cache-dir", str(tmp_path / "p"),
              "--pachd", address, "--exit-code", "--format", "json", *flags)
    return ran.code, json.loads(ran.out)


@pytest.mark.parametrize("case", ["conflict", "orphan", "adopt", "report-only-drift"])
def test_plan_exit_code_is_1_whenever_anything_differs(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path, case: str) -> None:
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    assert _plan_exit(gitops, localpachd.address, tmp_path)[0] == 0
    flags: tuple[str, ...] = ()
    if case == "conflict":
        by_hand(pach_client, "count", {"transform": {"cmd": ["true"]},
                "input": {"pfs": {"repo": "copy", "glob": "/"}}}, update=False,
                annotations={ANN_MANAGED_BY: OTHER})
        gitops.push(spec_files(), "count")  # type: ignore[arg-type]
    elif case == "orphan":
        gitops.push({"specs/pipelines/copy.yaml": None,
                     "specs/pipelines/keep.yaml": TAIL.replace("tail", "keep")
                     .replace("repo: count", "repo: raw")}, "copy removed")
    elif case == "adopt":
        by_hand(pach_client, "count", {"transform": {"cmd": ["true"]},
                "input": {"pfs": {"repo": "copy", "glob": "/"}}}, update=False)
        gitops.push(spec_files(), "count")  # type: ignore[arg-type]
    else:
        by_hand(pach_client, "copy", {**spec_of(pach_client, "copy"), "description": "x"},
                update=True, annotations=live(pach_client, "copy")[1])
        flags = ("--no-self-heal",)
    code, plan = _plan_exit(gitops, localpachd.address, tmp_path, *flags)
    assert code == 1 and not plan["in_sync"], plan
    wanted = {"conflict": "conflict", "orphan": "orphan", "adopt": "adopt",
              "report-only-drift": "drift"}[case]
    assert wanted in {p["action"] for p in plan["pipelines"]}
