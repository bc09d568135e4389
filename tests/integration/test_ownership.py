"""Ownership survives what people do on real clusters (real localpachd, real bare git remote,
`pachsync agent --once` as a process):

- a managed pipeline updated by hand with a spec file that has no annotations (`pachctl update
  pipeline -f count.json`) is drift: reverted, or only reported with --report-only-drift; it
  never blocks anything else, and a no-op sync afterwards stays within its RPC budget;
- every spelling of the source's repository (`/srv/git/x.git`, `file:///srv/git/x.git`,
  trailing slash) is one source: applying with one and planning or syncing with another finds
  everything unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentcore_gitops import make_gitops, spec_files, sync
from helpers.gitops import GitOps
from ownership_gitops import agent_once, by_hand, cli, live, spec_of

from agent.plan.normalize import ANN_MANAGED_BY
from agent.sync import source_id_for


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    return make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]


def _hand_update_without_annotations(client: Any, name: str, **changes: Any) -> None:
    by_hand(client, name, {**spec_of(client, name), **changes}, update=True)
    assert ANN_MANAGED_BY not in live(client, name)[1]


@pytest.mark.parametrize("change", [{"description": "edited by hand"},
                                    {"parallelism_spec": {"constant": 3}}, {}],
                         ids=["description", "parallelism", "annotations-only"])
def test_hand_update_without_annotations_is_reverted(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        change: dict[str, Any]) -> None:
    source = str(gitops.remote)
    first = agent_once(source, localpachd.address, tmp_path / "cache")
    assert first.code == 0, first.err
    _hand_update_without_annotations(pach_client, "count", **change)
    plan = cli("plan", "--source", source, "--cache-dir", str(tmp_path / "cache"), "--pachd",
               localpachd.address, "--exit-code", "--format", "json")
    assert plan.code == 1, plan.out + plan.err
    count = {p["name"]: p for p in json.loads(plan.out)["pipelines"]}["count"]
    assert count["action"] == "drift" and count["will_apply"], count
    assert "without pachsync's annotations" in count["reason"]

    healed = agent_once(source, localpachd.address, tmp_path / "cache")
    assert healed.code == 0, healed.err
    description, annotations, version = live(pach_client, "count")
    assert description == "counts copied files" and version == 3
    assert annotations[ANN_MANAGED_BY] == source_id_for(source, "main", "specs")
    assert annotations["pachsync.io/applied-version"] == "3"
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result == "unchanged" and again.rpc_count <= 3, again


def test_hand_update_without_annotations_is_only_reported_with_report_only_drift(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    gitops.push({"specs/pipelines/copy.yaml": spec_files()["specs/pipelines/copy.yaml"]
                 .replace("copies every file", "copies files")}, "copy: description")
    source = str(gitops.remote)
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    _hand_update_without_annotations(pach_client, "count", description="by hand")
    gitops.push({"specs/pipelines/copy.yaml": spec_files()["specs/pipelines/copy.yaml"]},
                "copy: description back")
    ran = agent_once(source, localpachd.address, tmp_path / "cache", "--report-only-drift")
    assert ran.code == 0, ran.err
    assert live(pach_client, "count")[0] == "by hand"  # reported, left as it is
    assert live(pach_client, "copy")[0] == "copies every file"  # the rest was applied
    result = sync(gitops, localpachd.address, tmp_path, self_heal=False)
    assert result.result == "unchanged" and result.actions["count"] == "drift"
    assert result.drift_detected == 1 and result.out_of_sync == 1


@pytest.mark.parametrize("spelling", ["file://{path}", "file://{path}/", "{path}/",
                                      "file://localhost{path}"])
def test_a_path_and_its_file_url_are_one_source(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path, spelling: str) -> None:
    path = str(gitops.remote)
    other = spelling.format(path=path)
    applied = cli("apply", "--source", other, "--cache-dir", str(tmp_path / "c1"), "--pachd",
                  localpachd.address)
    assert applied.code == 0, applied.out + applied.err
    managed_by = live(pach_client, "copy")[1][ANN_MANAGED_BY]
    assert managed_by == f"file://{path}#main:specs"
    plan = cli("plan", "--source", path, "--cache-dir", str(tmp_path / "c2"), "--pachd",
               localpachd.address, "--exit-code", "--format", "json")
    assert plan.code == 0, plan.out + plan.err
    data = json.loads(plan.out)
    assert data["in_sync"] and not data["conflicts"]
    assert {p["name"]: p["action"] for p in data["pipelines"]} == {
        "copy": "unchanged", "count": "unchanged"}
    ran = agent_once(path, localpachd.address, tmp_path / "c3")
    assert ran.code == 0, ran.err
    assert '"result": "unchanged"' in ran.err or "sync unchanged" in ran.err, ran.err


def test_pipelines_applied_under_the_old_source_id_form_stay_ours(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    """Clusters applied before the canonical form carry the resolved path as managed-by."""
    old_form = f"{Path(gitops.remote).resolve()}#main:specs"
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    for name in ("copy", "count"):  # as an older pachsync wrote them (version 2 = ours)
        annotations = {**live(pach_client, name)[1], ANN_MANAGED_BY: old_form,
                       "pachsync.io/applied-version": "2"}
        by_hand(pach_client, name, spec_of(pach_client, name), update=True,
                annotations=annotations)
        assert live(pach_client, name)[1:] == (annotations, 2)
    result = sync(gitops, localpachd.address, tmp_path / "other")
    assert result.result == "unchanged" and not result.conflicts, result
    assert result.actions == {"copy": "unchanged", "count": "unchanged"}
