"""`transform.datum_batching` in the normaliser and the plan: false and absent are one spec (proto3
drops false, so a server may echo it either way), and turning it on or off is a transform change
that `plan` shows and reprocesses like any other under the `auto` policy."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agent.cluster.model import LiveJob, LivePipeline, LiveRepo, LiveState
from agent.plan import Policy, plan
from agent.plan.normalize import (
    ANN_MANAGED_BY,
    ANN_SOURCE_COMMIT,
    ANN_SPEC_HASH,
    normalize_spec,
    spec_hash,
)
from agent.specs import DesiredState, PipelineSpec, RepoSpec, load_desired

ROOT = Path(__file__).resolve().parents[2]
SRC = "git@example:ml/specs#main:specs"
POLICY = Policy(source_id=SRC, commit="b" * 40)


def _doc(batching: Any = None, camel: bool = False) -> dict[str, Any]:
    transform: dict[str, Any] = {"image": "reg/iris:1", "cmd": ["python3", "-m", "stages.train"]}
    if batching is not None:
        transform["datumBatching" if camel else "datum_batching"] = batching
    return {"pipeline": {"name": "model"}, "transform": transform,
            "input": {"pfs": {"repo": "raw", "glob": "/*"}}}


@pytest.mark.parametrize("live", [_doc(False), _doc(False, camel=True), _doc(None)])
def test_false_and_absent_are_the_same_spec(live: dict[str, Any]) -> None:
    assert normalize_spec(_doc(None)) == normalize_spec(live)
    assert spec_hash(normalize_spec(_doc(None))) == spec_hash(normalize_spec(live))


@pytest.mark.parametrize("live", [_doc(True), _doc(True, camel=True)])
def test_true_is_kept_and_changes_the_hash(live: dict[str, Any]) -> None:
    normalized = normalize_spec(live)
    assert normalized["transform"]["datum_batching"] is True
    assert spec_hash(normalized) != spec_hash(normalize_spec(_doc(None)))
    assert normalize_spec(normalized) == normalized


def test_the_repository_specs_turn_it_on_for_model_and_test_only() -> None:
    specs = {ps.name: normalize_spec(ps.spec) for ps in load_desired(ROOT / "specs").pipelines}
    on = {name for name, spec in specs.items() if spec["transform"].get("datum_batching")}
    assert on == {"model", "test"}


def _applied(doc: dict[str, Any]) -> LivePipeline:
    """What the server holds after the agent applied `doc` (server form: camelCase, salt)."""
    live = copy.deepcopy(doc)
    live["metadata"] = {"annotations": {ANN_MANAGED_BY: SRC, ANN_SOURCE_COMMIT: "a" * 40,
                                        ANN_SPEC_HASH: spec_hash(normalize_spec(doc))}}
    live["salt"] = "random"
    return LivePipeline(name="model", project="default", spec=live)


def _plan(desired: dict[str, Any], applied: dict[str, Any]) -> Any:
    state = DesiredState(repos=(RepoSpec("raw"),), pipelines=(PipelineSpec(
        name="model", file="specs/pipelines/model.yaml", spec=desired, inputs=("raw",)),))
    jobs = {"model": LiveJob("j1", "JOB_SUCCESS", total=77, processed=77, skipped=0, failed=0)}
    live = LiveState(repos=(LiveRepo("raw"),), pipelines=(_applied(applied),), jobs=jobs)
    return plan(state, live, POLICY).change("model")


@pytest.mark.parametrize("before,after", [(None, True), (False, True), (True, None),
                                          (True, False)])
def test_plan_shows_a_change_as_a_transform_change(before: Any, after: Any) -> None:
    change = _plan(_doc(after), _doc(before))
    assert change is not None and change.action == "update" and change.reprocess
    assert change.label == "update+reprocess" and change.datums == 77
    assert "transform.datum_batching" in change.reprocess_reason
    assert [(d.path, bool(d.before), bool(d.after)) for d in change.diffs] == [
        ("transform.datum_batching", bool(before), bool(after))]


@pytest.mark.parametrize("desired,applied", [(None, False), (False, None), (True, True)])
def test_plan_sees_no_change_between_equal_forms(desired: Any, applied: Any) -> None:
    change = _plan(_doc(desired), _doc(applied, camel=True))
    assert change is not None and change.action == "unchanged"
