"""agent.plan.render: text, JSON and Markdown (with a Mermaid DAG) show the same decisions."""

from __future__ import annotations

import json
from pathlib import Path

from agent.cluster.model import LiveJob, LivePipeline, LiveRepo, LiveState
from agent.plan import Policy, plan, render
from agent.plan.normalize import ANN_MANAGED_BY, ANN_SPEC_HASH, normalize_spec, spec_hash
from agent.plan.render import summary
from agent.specs import load_desired

ROOT = Path(__file__).resolve().parents[2]
SRC = "src"


def _applied_then_bumped() -> tuple[object, object]:
    desired = load_desired(ROOT / "specs")
    live = []
    for ps in desired.pipelines:
        spec = dict(ps.spec)
        digest = spec_hash(normalize_spec(spec))
        if ps.name == "model":
            spec = {**spec, "transform": {**spec["transform"], "image": "old:0"}}
            digest = spec_hash(normalize_spec(spec))
        spec["metadata"] = {"annotations": {ANN_MANAGED_BY: SRC, ANN_SPEC_HASH: digest}}
        live.append(LivePipeline(ps.name, "default", spec))
    jobs = {"model": LiveJob("j", "JOB_SUCCESS", 77, 77, 0, 0)}
    state = LiveState((LiveRepo("raw_data"),), tuple(live), jobs)
    return desired, state


def test_text_json_markdown_agree() -> None:
    desired, live = _applied_then_bumped()
    p = plan(desired, live, Policy(SRC, commit="c" * 40))  # type: ignore[arg-type]
    text = render(p, "text")
    assert "~ model" in text and "update with reprocess (77 datums)" in text
    assert "transform.image: \"old:0\" -> " in text
    assert "+ repo parameters" in text
    data = json.loads(render(p, "json"))
    by_name = {x["name"]: x for x in data["pipelines"]}
    assert by_name["model"]["label"] == "update+reprocess" and by_name["model"]["datums"] == 77
    assert by_name["split"]["action"] == "unchanged"
    assert data["repos_to_create"] == ["parameters"] and data["in_sync"] is False
    md = render(p, "markdown")
    assert "| `model` | ~ update with reprocess (77 datums) | yes | 77 |" in md
    assert "```mermaid" in md and "n_split --> n_model" in md and "n_raw_data[(raw_data)]" in md
    assert "- transform.image: \"old:0\"" in md


def test_every_action_renders_with_its_symbol_and_reason() -> None:
    from agent.plan.model import FieldDiff, PipelineChange, Plan

    changes = (
        PipelineChange("a", "drift", reason="changed outside git since commit abc; reverting",
                       will_apply=True, diffs=(FieldDiff("parallelism_spec.constant", 9, 1),)),
        PipelineChange("b", "drift", reason="self-heal off", will_apply=False),
        PipelineChange("c", "delete", reason="removed from git (--prune)", will_apply=True),
        PipelineChange("d", "orphan", reason="removed from git; deleted only with --prune"),
        PipelineChange("e", "unmanaged", reason="not managed by pachsync; left alone"),
        PipelineChange("f", "conflict", reason="pipeline 'f' exists but is not managed"),
    )
    p = Plan(policy=Policy("src"), pipelines=changes, delete_order=("c",),
             conflicts=("f: pipeline 'f' exists but is not managed",))
    text = render(p, "text")
    for line in ("! a  drift: revert without reprocess", "parallelism_spec.constant: 9 -> 1",
                 "! b  drift (report only)", "- c  delete", "? d  orphan", ". e  unmanaged",
                 "x f  conflict", "conflict: f: pipeline 'f'"):
        assert line in text, (line, text)
    assert "1 to delete, 2 drifted" in text and "1 orphaned (need --prune)" in text
    assert [c.name for c in p.to_delete] == ["c"] and p.has_changes
    md = render(p, "markdown")
    assert ":::conflict" in md and "> conflict: f:" in md


def test_actions_are_one_enum_whose_values_json_keeps() -> None:
    from agent.plan.model import Action
    from agent.plan.render import to_dict

    desired, live = _applied_then_bumped()
    p = plan(desired, live, Policy(SRC, commit="c" * 40))  # type: ignore[arg-type]
    data = to_dict(p)
    assert all(type(x["action"]) is str for x in data["pipelines"])  # plain data, not the enum
    assert {x["action"] for x in data["pipelines"]} <= {a.value for a in Action}
    assert [a.value for a in Action] == ["create", "update", "unchanged", "delete", "drift",
                                         "orphan", "unmanaged", "conflict", "adopt"]


def test_summary_of_a_first_apply() -> None:
    p = plan(load_desired(ROOT / "specs"), LiveState((), (), {}), Policy("src", commit="c" * 40))
    assert summary(p) == ("2 repo(s) to create, 4 pipeline(s) to create, 0 to update "
                          "(0 with reprocess, 0 datums to re-run), 0 to delete, 0 drifted, "
                          "0 unchanged")
    assert "Summary: " + summary(p) in render(p, "text")
    assert f"**{summary(p)}**" in render(p, "markdown")
