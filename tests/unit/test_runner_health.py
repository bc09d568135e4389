"""The runner's health wiring with a scripted sync and an injected health check: judged after
every run (stalled and failed ones too, against the last desired state a run prepared), shown
on /status and as 0/1 gauges for every value, a failed check keeps the last report; and the
run's log line names the pipelines per action."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from runner_fakes import FakeSync, Step

from agent.errors import Transient
from agent.plan.health import Health, PipelineStatus, StatusReport, Sync
from agent.runner import Runner, RunnerConfig
from agent.runner.loop import describe_actions, names_by_action
from agent.runner.status import to_dict
from agent.sync import SyncOptions

OPTS = SyncOptions(source="https://git.example/gitops.git", branch="main")
PREPARED = object()  # stands in for agent.sync.Prepared: the runner only hands it back


class Checks:
    """A health check returning scripted reports (or raising), recording what it was given."""

    def __init__(self, *outcomes: StatusReport | Exception) -> None:
        self.outcomes = list(outcomes)
        self.given: list[object] = []

    def __call__(self, opts: SyncOptions, prepared: object) -> StatusReport:
        self.given.append(prepared)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def report(**pipelines: tuple[Sync, Health]) -> StatusReport:
    return StatusReport(tuple(PipelineStatus(n, s, h, health_reason=f"{n} is {h}")
                              for n, (s, h) in pipelines.items()), "src", "c1")


class PreparingSync(FakeSync):
    """FakeSync whose results carry a prepared desired state, except for the runs listed."""

    def __init__(self, steps: list[Step], unprepared: tuple[int, ...] = ()) -> None:
        super().__init__(steps=steps)
        self.unprepared = unprepared

    def __call__(self, opts: SyncOptions) -> Any:
        result = super().__call__(opts)
        prepared = None if self.calls in self.unprepared else PREPARED
        return dataclasses.replace(result, prepared=prepared)


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for r in made:
        r.stop(wait=True)


def make(sync: FakeSync, checks: Checks, made: list[Runner]) -> Runner:
    runner = Runner(OPTS, sync, config=RunnerConfig(interval_s=3600, jitter=0.0),
                    health_fn=checks)
    made.append(runner)
    return runner


def gauge(runner: Runner, name: str, **labels: str) -> float | None:
    return runner.metrics.registry.get_sample_value(name, labels)


def test_health_after_every_run_on_status_and_metrics(runners: list[Runner]) -> None:
    first = report(split=(Sync.SYNCED, Health.PROGRESSING), old=(Sync.ORPHAN, Health.HEALTHY))
    later = report(split=(Sync.SYNCED, Health.DEGRADED))
    checks = Checks(first, later)
    runner = make(PreparingSync([Step("applied", actions={"split": "create", "old": "orphan"}),
                                 Step("unchanged", actions={"split": "unchanged"})]),
                  checks, runners)
    runner.run_once()
    doc = to_dict(runner.status)["pipelines"]
    assert (doc["split"]["sync"], doc["split"]["health"], doc["split"]["action"]) == \
        ("Synced", "Progressing", "create")
    assert doc["old"]["state"] == "Orphan" and doc["split"]["health_reason"] == "split is " \
        "Progressing"
    for h in Health:  # every value exported, exactly one of them 1
        assert gauge(runner, "pachsync_pipeline_health", pipeline="split", health=h) == \
            (1.0 if h == Health.PROGRESSING else 0.0)
    for s in Sync:
        assert gauge(runner, "pachsync_pipeline_sync", pipeline="old", status=s) == \
            (1.0 if s == Sync.ORPHAN else 0.0)

    runner.run_once()  # nothing changed in git: health judged again (the job failed since)
    doc = to_dict(runner.status)
    assert doc["pipelines"]["split"]["health"] == "Degraded" and "old" not in doc["pipelines"]
    assert gauge(runner, "pachsync_pipeline_health", pipeline="split", health="Degraded") == 1
    assert gauge(runner, "pachsync_pipeline_sync", pipeline="old", status="Orphan") is None
    assert doc["health"]["health"]["Degraded"] == 1 and doc["health"]["error"] is None
    assert checks.given == [PREPARED, PREPARED]


def test_a_run_that_prepared_nothing_is_judged_against_the_last_desired_state(
        runners: list[Runner]) -> None:
    """A stalled or unfetchable head still gets its health refreshed (jobs keep finishing)."""
    checks = Checks(report(a=(Sync.SYNCED, Health.PROGRESSING)),
                    report(a=(Sync.SYNCED, Health.HEALTHY)))
    runner = make(PreparingSync([Step("applied", actions={"a": "create"}),
                                 Step("failed", kind="Transient", commit_none=True)],
                                unprepared=(2,)), checks, runners)
    runner.run_once()
    runner.run_once()
    assert checks.given == [PREPARED, PREPARED]
    assert to_dict(runner.status)["pipelines"]["a"]["health"] == "Healthy"


def test_no_health_before_any_run_prepared_a_desired_state(runners: list[Runner]) -> None:
    checks = Checks()
    runner = make(PreparingSync([Step("invalid", kind="SpecInvalid")], unprepared=(1,)),
                  checks, runners)
    runner.run_once()
    assert checks.given == [] and to_dict(runner.status)["health"] is None


def test_a_failed_check_keeps_the_last_report_and_says_why(runners: list[Runner]) -> None:
    good = report(a=(Sync.SYNCED, Health.HEALTHY))
    checks = Checks(good, Transient("cannot reach pachd at grpc://pachd:30650"))
    runner = make(PreparingSync([Step("applied", actions={"a": "create"}), Step("unchanged")]),
                  checks, runners)
    runner.run_once()
    checked_at = runner.status.health_checked_at
    runner.run_once()
    doc = to_dict(runner.status)
    assert doc["pipelines"]["a"]["health"] == "Healthy"
    assert doc["health"]["error"] == "cannot reach pachd at grpc://pachd:30650"
    assert doc["health"]["checkedAt"] == checked_at
    assert gauge(runner, "pachsync_pipeline_health", pipeline="a", health="Healthy") == 1


def test_the_log_names_the_pipelines_per_action(runners: list[Runner],
                                                caplog: pytest.LogCaptureFixture) -> None:
    actions = {"split": "create", "model": "update+reprocess", "test": "unchanged",
               "select": "update+reprocess", "old": "delete"}
    runner = make(PreparingSync([Step("applied", actions=actions)]),
                  Checks(report()), runners)
    logger = logging.getLogger("pachsync")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="pachsync")
    try:
        runner.run_once()
    finally:
        logger.removeHandler(caplog.handler)
    # caplog's own handler may see it too (when "pachsync" propagates): one record either way
    (record,) = {r for r in caplog.records if r.getMessage().startswith("sync ")}
    assert record.getMessage() == \
        "sync applied: create split; delete old; update+reprocess model, select"
    assert record.fields["pipelines"] == {  # type: ignore[attr-defined]
        "delete": ["old"], "create": ["split"], "update+reprocess": ["model", "select"]}


def test_long_name_lists_are_cut_in_the_message_only() -> None:
    named = names_by_action({f"p{i:03}": "create" for i in range(25)})
    assert len(named["create"]) == 25
    text = describe_actions(named)
    assert text.startswith(": create p000, p001") and text.endswith("p019 and 5 more")
    assert describe_actions(names_by_action({"a": "unchanged"})) == ""
