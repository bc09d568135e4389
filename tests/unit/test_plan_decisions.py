"""agent.plan: every decision the planner makes, on hand-written desired and live states."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.cluster.model import LiveJob, LivePipeline, LiveRepo, LiveState
from agent.plan import Policy, plan
from agent.plan.normalize import (
    ANN_MANAGED_BY,
    ANN_REPROCESS,
    ANN_SOURCE_COMMIT,
    ANN_SPEC_HASH,
    normalize_spec,
    spec_hash,
)
from agent.specs import DesiredState, PipelineSpec, RepoSpec

SRC = "git@example:ml/specs#main:specs"


def _spec(name: str, repo: str, image: str = "busybox:1", **extra: Any) -> PipelineSpec:
    doc = {"pipeline": {"name": name},
           "transform": {"image": image, "cmd": ["sh", "-c", "cp -r /pfs/in/* /pfs/out/"]},
           "input": {"pfs": {"repo": repo, "glob": "/*"}}, **extra}
    return PipelineSpec(name=name, file=f"specs/pipelines/{name}.yaml", spec=doc, inputs=(repo,))


def _desired(*pipes: PipelineSpec) -> DesiredState:
    return DesiredState(repos=(RepoSpec("raw"),), pipelines=tuple(pipes))


def _live_from(ps: PipelineSpec, source: str | None = SRC, recorded: str | None = None,
               mutate: dict[str, Any] | None = None) -> LivePipeline:
    """What the server would hold after we applied `ps` (then maybe changed by hand)."""
    spec = copy.deepcopy(ps.spec)
    digest = spec_hash(normalize_spec(spec))
    spec.update(mutate or {})
    ann = {}
    if source is not None:
        ann = {ANN_MANAGED_BY: source, ANN_SOURCE_COMMIT: "a" * 40,
               ANN_SPEC_HASH: recorded or digest}
    spec["metadata"] = {"annotations": ann}
    spec["salt"] = "random"
    return LivePipeline(name=ps.name, project="default", spec=spec)


def _live(*pipes: LivePipeline, repos: tuple[str, ...] = ("raw",),
          jobs: dict[str, LiveJob] | None = None) -> LiveState:
    return LiveState(repos=tuple(LiveRepo(r) for r in repos), pipelines=pipes, jobs=jobs or {})


A = _spec("a", "raw")
B = _spec("b", "a")
POLICY = Policy(source_id=SRC, commit="b" * 40)


def test_first_plan_creates_repos_and_pipelines_in_dag_order() -> None:
    p = plan(_desired(A, B), _live(repos=()), POLICY)
    assert [r.name for r in p.repos_to_create] == ["raw"]
    assert [(c.name, c.action) for c in p.pipelines] == [("a", "create"), ("b", "create")]
    assert [c.name for c in p.to_apply] == ["a", "b"]
    ann = p.change("a").request["metadata"]["annotations"]  # type: ignore[index,union-attr]
    assert ann[ANN_MANAGED_BY] == SRC and ann[ANN_SOURCE_COMMIT] == "b" * 40
    assert ann[ANN_SPEC_HASH] == spec_hash(normalize_spec(A.spec))
    assert p.has_changes


def test_applied_state_is_unchanged() -> None:
    p = plan(_desired(A, B), _live(_live_from(A), _live_from(B)), POLICY)
    assert [c.action for c in p.pipelines] == ["unchanged", "unchanged"]
    assert not p.has_changes and p.to_apply == ()


def test_image_change_updates_with_reprocess_and_counts_datums() -> None:
    new_a = _spec("a", "raw", image="busybox:2")
    jobs = {"a": LiveJob("j1", "JOB_SUCCESS", total=7, processed=7, skipped=0, failed=0)}
    p = plan(_desired(new_a, B), _live(_live_from(A), _live_from(B), jobs=jobs), POLICY)
    a = p.change("a")
    assert a is not None and a.action == "update" and a.reprocess and a.label == "update+reprocess"
    assert a.datums == 7
    assert "transform.image" in a.reprocess_reason
    assert [(d.path, d.before, d.after) for d in a.diffs] == [
        ("transform.image", "busybox:1", "busybox:2")]
    assert p.change("b").action == "unchanged"  # type: ignore[union-attr]


@pytest.mark.parametrize("extra", [{"parallelism_spec": {"constant": 4}},
                                   {"description": "now documented"}])
def test_non_transform_change_updates_without_reprocess(extra: dict[str, Any]) -> None:
    p = plan(_desired(_spec("a", "raw", **extra)), _live(_live_from(A)), POLICY)
    a = p.change("a")
    assert a is not None and a.action == "update" and not a.reprocess and a.label == "update"
    assert a.datums is None


@pytest.mark.parametrize("mode,expected", [("always", True), ("never", False)])
def test_reprocess_policy_and_annotation_override(mode: str, expected: bool) -> None:
    desc = _spec("a", "raw", description="x")
    img = _spec("a", "raw", image="busybox:9")
    assert plan(_desired(desc), _live(_live_from(A)),
                Policy(SRC, reprocess=mode)).change("a").reprocess is expected  # type: ignore[union-attr]
    annotated = _spec("a", "raw", image="busybox:9",
                      metadata={"annotations": {ANN_REPROCESS: mode}})
    got = plan(_desired(annotated), _live(_live_from(A)), POLICY).change("a")
    assert got is not None and got.reprocess is expected and ANN_REPROCESS in got.reprocess_reason
    assert plan(_desired(img), _live(_live_from(A)), POLICY).change("a").reprocess  # type: ignore[union-attr]


def test_hand_change_is_drift_and_reverted_unless_report_only() -> None:
    drifted = _live_from(A, mutate={"parallelism_spec": {"constant": 9}})
    p = plan(_desired(A), _live(drifted), POLICY)
    a = p.change("a")
    assert a is not None and a.action == "drift" and a.will_apply and not a.reprocess
    assert [d.path for d in a.diffs] == ["parallelism_spec.constant"]
    report_only = plan(_desired(A), _live(drifted), Policy(SRC, self_heal=False)).change("a")
    assert report_only is not None and report_only.action == "drift" and not report_only.will_apply
    image_drift = _live_from(A, mutate={"transform": {"image": "evil:1", "cmd": ["sh"]}})
    assert plan(_desired(A), _live(image_drift), POLICY).change("a").reprocess  # type: ignore[union-attr]


def test_git_change_after_hand_change_still_counts_as_drift() -> None:
    drifted = _live_from(A, mutate={"description": "by hand"})
    p = plan(_desired(_spec("a", "raw", image="busybox:3")), _live(drifted), POLICY)
    assert p.change("a").action == "drift"  # type: ignore[union-attr]


def test_unmanaged_or_foreign_pipeline_with_our_name_is_a_conflict() -> None:
    for owner in (None, "other-source"):
        p = plan(_desired(A), _live(_live_from(A, source=owner)), POLICY)
        assert p.change("a").action == "conflict"  # type: ignore[union-attr]
        assert p.conflicts and not p.to_apply
    repo_clash = plan(_desired(A), _live(repos=("raw", "a")), POLICY)
    assert repo_clash.change("a").action == "conflict"  # type: ignore[union-attr]


def test_live_only_pipelines_pruned_only_when_ours_and_asked() -> None:
    old = _spec("old", "a")
    foreign = _spec("theirs", "raw")
    live = _live(_live_from(A), _live_from(old), _live_from(foreign, source=None))
    keep = plan(_desired(A), live, POLICY)
    assert keep.change("old").action == "orphan" and keep.to_delete == ()  # type: ignore[union-attr]
    assert keep.change("theirs").action == "unmanaged"  # type: ignore[union-attr]
    prune = plan(_desired(A), live, Policy(SRC, prune=True))
    assert [c.name for c in prune.to_delete] == ["old"]
    assert prune.change("theirs").action == "unmanaged"  # type: ignore[union-attr]


def test_empty_desired_never_prunes_without_allow_empty() -> None:
    live = _live(_live_from(A), _live_from(B))
    guarded = plan(_desired(), live, Policy(SRC, prune=True))
    assert guarded.to_delete == () and guarded.warnings
    allowed = plan(_desired(), live, Policy(SRC, prune=True, allow_empty=True))
    assert [c.name for c in allowed.to_delete] == ["b", "a"]  # downstream first


def test_bad_reprocess_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        plan(_desired(A), _live(), Policy(SRC, reprocess="sometimes"))


def test_large_chain_plans_and_deletes_downstream_first() -> None:
    chain = [_spec(f"p{i:03d}", "raw" if i == 0 else f"p{i - 1:03d}") for i in range(300)]
    live = _live(*[_live_from(ps) for ps in chain])
    p = plan(_desired(*chain), live, POLICY)
    assert p.counts() == {"unchanged": 300}
    pruned = plan(_desired(), live, Policy(SRC, prune=True, allow_empty=True))
    assert [c.name for c in pruned.to_delete] == [ps.name for ps in reversed(chain)]


def test_projects_keep_same_named_pipelines_apart() -> None:
    ml = PipelineSpec(name="a", file="specs/pipelines/a.yaml", inputs=("raw",), spec={
        **A.spec, "pipeline": {"name": "a", "project": {"name": "ml"}}})
    other = _live_from(A, source=None)  # default/a, unmanaged: not ours, not in the way
    p = plan(_desired(ml), _live(other, repos=("raw",)), POLICY)
    assert [(c.name, c.action) for c in p.pipelines] == [("ml/a", "create"), ("a", "unmanaged")]
    assert p.change("ml/a").inputs == ("ml/raw",)  # type: ignore[union-attr]
    managed = LivePipeline(name="a", project="ml", spec={
        **_live_from(ml).spec, "pipeline": {"name": "a", "project": {"name": "ml"}}})
    again = plan(_desired(ml), _live(managed, other), POLICY)
    assert again.change("ml/a").action == "unchanged"  # type: ignore[union-attr]
    pruned = plan(_desired(A), _live(managed), Policy(SRC, prune=True))
    assert [c.name for c in pruned.to_delete] == ["ml/a"]


def _versioned(ps: PipelineSpec, version: int, applied: int, **server_added: Any) -> LivePipeline:
    """Live pipeline at `version` whose annotations say our update produced `applied`; the
    server stored extra defaults (`server_added`) the normaliser does not know about."""
    lp = _live_from(ps)
    spec = {**lp.spec, **server_added}
    spec["metadata"]["annotations"]["pachsync.io/applied-version"] = str(applied)
    return LivePipeline(ps.name, "default", spec, version=version)


def test_unknown_server_default_never_causes_an_update_loop() -> None:
    gap = {"resource_requests": {"memory": "64M"}}
    p = plan(_desired(A), _live(_versioned(A, 3, 3, **gap)), POLICY)
    a = p.change("a")
    assert a is not None and a.action == "unchanged" and not p.has_changes
    assert "the server stores resource_requests differently" in a.reason


def test_versions_tell_drift_from_git_changes() -> None:
    gap = {"resource_requests": {"memory": "64M"}}
    touched = plan(_desired(A), _live(_versioned(A, 4, 3, **gap)), POLICY).change("a")
    assert touched is not None and touched.action == "drift"
    new = _spec("a", "raw", image="busybox:2")
    git_change = plan(_desired(new), _live(_versioned(A, 3, 3, **gap)), POLICY).change("a")
    assert git_change is not None and git_change.action == "update" and git_change.reprocess
    ann = git_change.request["metadata"]["annotations"]  # type: ignore[index]
    assert ann["pachsync.io/applied-version"] == "4"
    created = plan(_desired(A), _live(), POLICY).change("a")
    assert created.request["metadata"]["annotations"]["pachsync.io/applied-version"] == "1"  # type: ignore[index,union-attr]
