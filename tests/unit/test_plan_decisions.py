"""agent.plan: every decision the planner makes, on hand-written desired and live states
(ownership across versions, adoption, per-pipeline conflicts and source identity included)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.cluster.model import LiveJob, LivePipeline, LiveRepo, LiveState, PastVersion
from agent.plan import Policy, plan
from agent.plan.diff import history_wanted
from agent.plan.normalize import (
    ANN_MANAGED_BY,
    ANN_REPROCESS,
    ANN_SOURCE_COMMIT,
    ANN_SPEC_HASH,
    normalize_spec,
    spec_hash,
)
from agent.plan.render import summary
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


def test_foreign_pipeline_or_plain_repo_with_our_name_is_a_conflict() -> None:
    p = plan(_desired(A), _live(_live_from(A, source="other-source")), POLICY)
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


# -- ownership across versions, adoption, per-pipeline conflicts, one source identity ------------
def _by_hand(ps: PipelineSpec, history: tuple[PastVersion, ...] | None, version: int = 2,
             **mutate: Any) -> LivePipeline:
    """`pachctl update pipeline -f spec.json`: the spec (maybe edited), no annotations at all."""
    spec = {**copy.deepcopy(ps.spec), **mutate, "salt": "s"}
    return LivePipeline(ps.name, "default", spec, version=version, history=history)


OURS_BEFORE = (PastVersion(1, {ANN_MANAGED_BY: SRC, ANN_SOURCE_COMMIT: "c" * 40}),)


@pytest.mark.parametrize("mutate", [{}, {"description": "by hand"},
                                    {"transform": {"image": "evil:1", "cmd": ["sh"]}}])
def test_hand_update_without_annotations_after_our_version_is_drift(mutate: dict[str, Any]
                                                                    ) -> None:
    live = _live(_by_hand(A, OURS_BEFORE, **mutate))
    a = plan(_desired(A), live, POLICY).change("a")
    assert a is not None and a.action == "drift" and a.will_apply, a
    assert "without pachsync's annotations" in a.reason and "cccccccccccc" in a.reason
    assert a.reprocess == ("transform" in mutate)
    ann = a.request["metadata"]["annotations"]  # type: ignore[index]
    assert ann[ANN_MANAGED_BY] == SRC and ann["pachsync.io/applied-version"] == "3"
    report = plan(_desired(A), live, Policy(SRC, self_heal=False)).change("a")
    assert report is not None and report.action == "drift" and not report.will_apply
    assert plan(_desired(A), live, POLICY).has_changes


def test_our_version_found_deeper_in_history_or_in_an_old_spelling_is_still_ours() -> None:
    deeper = (PastVersion(3, {}), PastVersion(2, {"team": "x"}), PastVersion(1, {
        ANN_MANAGED_BY: "/srv/git/x.git#main:specs"}))
    p = plan(_desired(A), _live(_by_hand(A, deeper, version=4)),
             Policy("file:///srv/git/x.git#main:specs"))
    assert p.change("a").action == "drift"  # type: ignore[union-attr]


def test_hand_update_of_another_sources_pipeline_stays_a_conflict() -> None:
    theirs = (PastVersion(1, {ANN_MANAGED_BY: "https://example.com/other#main:specs"}),)
    p = plan(_desired(A, _spec("c", "raw", description="new")),
             _live(_by_hand(A, theirs), _live_from(_spec("c", "raw"))), POLICY)
    a = p.change("a")
    assert a is not None and a.action == "conflict" and "until version 1" in a.reason
    assert [c.name for c in p.to_apply] == ["c"]  # the rest is still applied


@pytest.mark.parametrize("history", [None, ()], ids=["not-looked-up", "single-version"])
def test_never_managed_pipeline_is_adopted_only_when_asked(
        history: tuple[PastVersion, ...] | None) -> None:
    new_image = _spec("a", "raw", image="busybox:2")
    jobs = {"a": LiveJob("j", "JOB_SUCCESS", total=7, processed=7, skipped=0, failed=0)}
    live = _live(_by_hand(A, history, version=5), jobs=jobs)
    left = plan(_desired(new_image), live, POLICY)
    a = left.change("a")
    assert a is not None and a.action == "adopt" and not a.will_apply and a.label == "adopt"
    assert [(d.path, d.before, d.after) for d in a.diffs] == [
        ("transform.image", "busybox:1", "busybox:2")]
    assert a.reprocess and a.datums == 7 and "--adopt" in a.reason
    assert left.to_apply == () and left.has_changes and not left.conflicts
    taken = plan(_desired(new_image), live, Policy(SRC, adopt=True)).change("a")
    assert taken is not None and taken.action == "adopt" and taken.will_apply
    ann = taken.request["metadata"]["annotations"]  # type: ignore[index]
    assert ann[ANN_MANAGED_BY] == SRC and ann["pachsync.io/applied-version"] == "6"
    marked = _spec("a", "raw", image="busybox:2",
                   metadata={"annotations": {"pachsync.io/adopt": "true"}})
    by_annotation = plan(_desired(marked), live, POLICY).change("a")
    assert by_annotation is not None and by_annotation.will_apply
    assert "pachsync.io/adopt" in by_annotation.reason


def test_history_is_wanted_only_for_unannotated_pipelines_git_names() -> None:
    live = _live(_live_from(A), _by_hand(B, None), _by_hand(_spec("x", "raw"), None),
                 _by_hand(_spec("c", "raw"), ()), _live_from(_spec("d", "raw"), source="other"))
    desired = _desired(A, B, _spec("c", "raw"), _spec("d", "raw"))
    assert history_wanted(desired, live) == ["b"]


@pytest.mark.parametrize("blocker", ["foreign", "repo", "foreign-history"])
def test_a_conflict_skips_itself_and_its_readers_only(blocker: str) -> None:
    c_old, c_new = _spec("c", "raw"), _spec("c", "raw", description="unrelated change")
    b, d = _spec("b", "a"), _spec("d", "b")  # b reads a, d reads b: both created now
    pipes = [_live_from(c_old)]
    repos: tuple[str, ...] = ("raw",)
    if blocker == "foreign":
        pipes.append(_live_from(A, source="other-source"))
    elif blocker == "repo":
        repos = ("raw", "a")
    else:
        pipes.append(_by_hand(A, (PastVersion(1, {ANN_MANAGED_BY: "other"}),)))
    p = plan(_desired(A, b, d, c_new), _live(*pipes, repos=repos), POLICY)
    assert [c.name for c in p.to_apply] == ["c"]
    assert p.change("a").action == "conflict"  # type: ignore[union-attr]
    assert (p.change("b").blocked_by, p.change("d").blocked_by) == (("a",), ("b",))  # type: ignore[union-attr]
    assert "skipped: it reads a" in p.change("b").reason  # type: ignore[union-attr]
    assert [c.name for c in p.skipped] == ["a", "b", "d"]
    assert "2 skipped (reading a conflict)" in summary(p)


def test_pending_adoption_or_report_only_drift_block_nobody() -> None:
    b = _spec("b", "a", description="new")
    live = _live(_by_hand(A, ()), _live_from(_spec("b", "a")))
    p = plan(_desired(A, b), live, POLICY)
    assert p.change("a").action == "adopt" and [c.name for c in p.to_apply] == ["b"]  # type: ignore[union-attr]


@pytest.mark.parametrize("case", ["conflict", "orphan", "adopt", "report-only-drift"])
def test_plan_has_changes_whenever_anything_differs(case: str) -> None:
    policy = POLICY
    if case == "conflict":
        desired, live = _desired(A), _live(_live_from(A, source="other"))
    elif case == "orphan":
        desired, live = _desired(A), _live(_live_from(A), _live_from(_spec("old", "raw")))
    elif case == "adopt":
        desired, live = _desired(A), _live(_by_hand(A, ()))
    else:
        desired, live = _desired(A), _live(_live_from(A, mutate={"description": "by hand"}))
        policy = Policy(SRC, self_heal=False)
    p = plan(desired, live, policy)
    assert p.has_changes and not p.to_apply and not p.to_delete
    assert plan(_desired(A), _live(_live_from(A)), POLICY).has_changes is False


@pytest.mark.parametrize("ours", ["/srv/git/x.git#main:specs", "file:///srv/git/x.git#main:specs",
                                  "file://localhost/srv/git/x.git/#main:/specs/"])
def test_every_spelling_of_our_source_is_us(ours: str) -> None:
    live = _live(_live_from(A, source="/srv/git/x.git#main:specs"),
                 _live_from(_spec("old", "raw"), source="file:///srv/git/x.git#main:specs"))
    p = plan(_desired(A), live, Policy(ours, prune=True))
    assert p.change("a").action == "unchanged"  # type: ignore[union-attr]
    assert [c.name for c in p.to_delete] == ["old"] and not p.conflicts


def test_summary_counts_a_drift_revert_as_a_drift_not_an_update() -> None:
    jobs = {"a": LiveJob("j", "JOB_SUCCESS", total=7, processed=7, skipped=0, failed=0)}
    drifted = _live_from(A, mutate={"transform": {"image": "evil:1", "cmd": ["sh"]}})
    p = plan(_desired(A), _live(drifted, jobs=jobs), POLICY)
    assert "0 to update (0 with reprocess, 0 datums to re-run)" in summary(p)
    assert "1 drifted (1 to revert, 1 with reprocess, 7 datums to re-run)" in summary(p)
    report_only = plan(_desired(A), _live(drifted, jobs=jobs), Policy(SRC, self_heal=False))
    assert ", 1 drifted, " in summary(report_only)
