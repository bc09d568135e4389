"""Pure sync and health (agent.plan.health): every plan action, every Pachyderm pipeline and job
state, jobs of other versions, the annotations-only view, and what `status --wait` decides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cluster.model import LiveJob, LivePipeline, LiveState
from agent.plan.health import (
    SYNC_OF_ACTION,
    Health,
    PipelineStatus,
    Sync,
    all_good,
    infer_source_id,
    pipeline_health,
    pipeline_statuses,
    to_dict,
    waiting_on,
)
from agent.plan.model import PipelineChange, Plan, Policy
from agent.plan.normalize import (
    ANN_APPLIED_VERSION,
    ANN_MANAGED_BY,
    ANN_SOURCE_COMMIT,
    ANN_SPEC_HASH,
)

SRC = "file:///srv/git/pipelines.git#main:specs"


def live(name: str, state: str = "PIPELINE_RUNNING", version: int = 1, owner: str | None = SRC,
         applied: int | None = 1, stopped: bool = False, reason: str = "",
         project: str = "default") -> LivePipeline:
    ann = {} if owner is None else {ANN_MANAGED_BY: owner, ANN_SOURCE_COMMIT: "c0ffee" * 6,
                                    ANN_SPEC_HASH: "h"}
    if owner is not None and applied is not None:
        ann[ANN_APPLIED_VERSION] = str(applied)
    spec: dict[str, Any] = {"pipeline": {"name": name}, "transform": {"cmd": ["true"]},
                            "metadata": {"annotations": ann}}
    return LivePipeline(name=name, project=project, spec=spec, version=version, state=state,
                        stopped=stopped, reason=reason)


def job(state: str, version: int = 1, reason: str = "", failed: int = 0) -> LiveJob:
    return LiveJob(id="0123456789abcdef", state=state, total=4, processed=3 - failed,
                   skipped=1, failed=failed, pipeline_version=version, reason=reason)


@pytest.mark.parametrize(("action", "sync"), [
    ("unchanged", Sync.SYNCED), ("create", Sync.OUT_OF_SYNC), ("update", Sync.OUT_OF_SYNC),
    ("adopt", Sync.OUT_OF_SYNC), ("drift", Sync.DRIFTED), ("orphan", Sync.ORPHAN),
    ("delete", Sync.ORPHAN), ("conflict", Sync.CONFLICT), ("unmanaged", Sync.UNMANAGED),
    ("some-future-action", Sync.OUT_OF_SYNC), ("", Sync.OUT_OF_SYNC),
])
def test_every_plan_action_maps_to_one_sync_status(action: str, sync: Sync) -> None:
    plan = Plan(policy=Policy(SRC), pipelines=(PipelineChange("p", action, reason="why"),))
    (status,) = pipeline_statuses(plan, LiveState(pipelines=(live("p"),)))
    assert (status.sync, status.sync_reason, status.action) == (sync, "why", action)


@pytest.mark.fuzz
@given(st.text(max_size=12))
def test_only_unchanged_reads_as_synced(action: str) -> None:
    plan = Plan(policy=Policy(SRC), pipelines=(PipelineChange("p", action),))
    (status,) = pipeline_statuses(plan, LiveState(pipelines=(live("p"),)))
    assert (status.sync == Sync.SYNCED) == (action == "unchanged")
    assert status.sync in set(Sync)


def test_sync_table_covers_every_action_of_the_plan_model() -> None:
    from agent.plan import model

    actions = {v for k, v in vars(model).items() if k.isupper() and isinstance(v, str)}
    assert actions <= set(SYNC_OF_ACTION), actions - set(SYNC_OF_ACTION)


FAILED = "datum 3f2a failed: exit status 1"


@pytest.mark.parametrize(("pipeline", "newest", "health", "said"), [
    (None, None, Health.MISSING, "no such pipeline"),
    (live("p", stopped=True), job("JOB_FAILURE", reason=FAILED), Health.SUSPENDED, "stopped"),
    (live("p", "PIPELINE_PAUSED"), None, Health.SUSPENDED, "stopped"),
    (live("p", "PIPELINE_CRASHING", reason="image pull backoff"), job("JOB_SUCCESS"),
     Health.DEGRADED, "pipeline crashing: image pull backoff"),
    (live("p", "PIPELINE_FAILURE", reason="input repo default/x not found"), None,
     Health.DEGRADED, "pipeline failure: input repo default/x not found"),
    (live("p"), job("JOB_FAILURE", reason=FAILED, failed=1), Health.DEGRADED, FAILED),
    (live("p"), job("JOB_KILLED", reason="killed by user"), Health.DEGRADED, "killed by user"),
    (live("p"), job("JOB_UNRUNNABLE", reason="upstream failed"), Health.DEGRADED,
     "unrunnable"),
    (live("p", "PIPELINE_STANDBY"), job("JOB_FAILURE"), Health.DEGRADED, "no reason given"),
    *[(live("p"), job(s), Health.PROGRESSING, s.removeprefix("JOB_").lower())
      for s in ("JOB_CREATED", "JOB_STARTING", "JOB_RUNNING", "JOB_EGRESSING",
                "JOB_FINISHING")],
    (live("p", "PIPELINE_STARTING"), None, Health.PROGRESSING, "pipeline starting"),
    (live("p", "PIPELINE_RESTARTING"), job("JOB_SUCCESS"), Health.PROGRESSING, "restarting"),
    (live("p"), job("JOB_SUCCESS"), Health.HEALTHY, "success: 4/4 datums, 0 failed"),
    (live("p", "PIPELINE_STANDBY"), job("JOB_SUCCESS"), Health.HEALTHY, "success"),
    (live("p"), None, Health.HEALTHY, "no job yet"),
    (live("p", "PIPELINE_STATE_UNKNOWN"), job("JOB_SUCCESS"), Health.UNKNOWN, "UNKNOWN"),
    (live("p", ""), None, Health.UNKNOWN, "not reported"),
    (live("p"), job("JOB_STATE_UNKNOWN"), Health.UNKNOWN, "job"),
])
def test_health_from_pipeline_state_and_newest_job(pipeline: LivePipeline | None,
                                                   newest: LiveJob | None, health: Health,
                                                   said: str) -> None:
    got, reason = pipeline_health(pipeline, newest)
    assert got == health and said in reason, reason


def test_real_pachyderm_state_names_are_all_known() -> None:
    """Every JobState and PipelineState of python-pachyderm's protos gets a health; only the
    UNKNOWN ones read as Unknown."""
    for name in pps_pb2.PipelineState.keys():
        health, _ = pipeline_health(live("p", name), None)
        assert (health == Health.UNKNOWN) == (name == "PIPELINE_STATE_UNKNOWN"), name
    for name in pps_pb2.JobState.keys():
        health, _ = pipeline_health(live("p"), job(name))
        assert (health == Health.UNKNOWN) == (name == "JOB_STATE_UNKNOWN"), name


def test_only_jobs_of_the_version_running_now_count() -> None:
    """An update kills the old version's job (KILLED) and the old spec's job may have failed:
    neither makes the new version Degraded; its own failed job does."""
    plan = Plan(policy=Policy(SRC), pipelines=(PipelineChange("p", "unchanged"),))
    pipeline = live("p", version=3, applied=3)
    for old in (job("JOB_KILLED", version=2), job("JOB_FAILURE", version=2, reason=FAILED)):
        (s,) = pipeline_statuses(plan, LiveState(pipelines=(pipeline,), jobs={"p": old}))
        assert (s.health, s.job, s.health_reason) == (Health.HEALTHY, None,
                                                      "no job yet: nothing to run")
    (s,) = pipeline_statuses(plan, LiveState(pipelines=(pipeline,),
                                             jobs={"p": job("JOB_FAILURE", 3, FAILED)}))
    assert s.health == Health.DEGRADED and FAILED in s.health_reason and s.job is not None


def test_without_a_plan_sync_comes_from_the_annotations_and_says_so() -> None:
    state = LiveState(pipelines=(live("ours"), live("edited", version=2, applied=1),
                                 live("theirs", owner=None)),
                      jobs={"ours": job("JOB_SUCCESS"), "edited": job("JOB_RUNNING", 2)})
    got = {s.name: s for s in pipeline_statuses(None, state)}
    assert {n: (s.sync, s.health) for n, s in got.items()} == {
        "edited": (Sync.DRIFTED, Health.PROGRESSING), "ours": (Sync.SYNCED, Health.HEALTHY),
        "theirs": (Sync.UNMANAGED, Health.HEALTHY)}
    assert all("annotations alone" in s.sync_reason for s in got.values())
    assert got["ours"].applied_version == 1 and got["ours"].managed_by == SRC


def test_git_only_and_live_only_pipelines_and_projects() -> None:
    plan = Plan(policy=Policy(SRC), pipelines=(
        PipelineChange("new", "create", reason="not in the cluster"),
        PipelineChange("lab/p", "unchanged", project="lab"),
        PipelineChange("gone", "orphan", reason="removed from git")))
    state = LiveState(pipelines=(live("p", project="lab"), live("gone")),
                      jobs={"lab/p": job("JOB_SUCCESS")})
    got = [(s.name, s.sync, s.health) for s in pipeline_statuses(plan, state)]
    assert got == [("new", Sync.OUT_OF_SYNC, Health.MISSING),
                   ("lab/p", Sync.SYNCED, Health.HEALTHY),
                   ("gone", Sync.ORPHAN, Health.HEALTHY)]


def test_what_status_wait_decides() -> None:
    def st_(sync: Sync, health: Health) -> PipelineStatus:
        return PipelineStatus("p", sync, health)

    good = st_(Sync.SYNCED, Health.HEALTHY)
    busy = st_(Sync.SYNCED, Health.PROGRESSING)
    foreign_busy = st_(Sync.UNMANAGED, Health.PROGRESSING)
    assert all_good([good, st_(Sync.UNMANAGED, Health.DEGRADED)])  # not ours: never counts
    assert waiting_on([good, busy, foreign_busy]) == (busy,)
    for bad in (st_(Sync.SYNCED, Health.DEGRADED), st_(Sync.ORPHAN, Health.HEALTHY),
                st_(Sync.SYNCED, Health.SUSPENDED), st_(Sync.OUT_OF_SYNC, Health.MISSING),
                st_(Sync.DRIFTED, Health.HEALTHY), st_(Sync.CONFLICT, Health.HEALTHY)):
        assert not all_good([good, bad]), bad


def test_source_inferred_only_from_one_owner_of_the_pipelines_git_names() -> None:
    other = "https://example.invalid/x.git#main:specs"
    state = LiveState(pipelines=(live("a"), live("b"), live("c", owner=other),
                                 live("d", owner=None)))
    assert infer_source_id(["a", "b", "d", "missing"], state) == SRC
    assert infer_source_id(["a", "c"], state) is None  # two owners: no guess
    assert infer_source_id(["d", "missing"], state) is None


def test_json_form() -> None:
    plan = Plan(policy=Policy(SRC), pipelines=(PipelineChange("p", "unchanged", reason="eq"),))
    (s,) = pipeline_statuses(plan, LiveState(pipelines=(live("p"),),
                                             jobs={"p": job("JOB_SUCCESS")}))
    doc = to_dict(s)
    assert doc["sync"] == "Synced" and doc["health"] == "Healthy" and doc["version"] == 1
    assert doc["last_job"]["state"] == "JOB_SUCCESS" and doc["applied_version"] == 1
    assert doc["managed_by"] == SRC and doc["source_commit"] == "c0ffee" * 6
