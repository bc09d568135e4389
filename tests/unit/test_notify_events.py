"""agent.notify.events: the statuses a sequence of runs and health checks means, each posted once
per state change (an interval run of the same commit posts nothing new; a retried failing commit
never loops pending/failed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.cluster.model import LiveJob
from agent.notify.events import CommitStatuses, Event
from agent.plan.health import Health, PipelineStatus, StatusReport, Sync

A, B = "a" * 40, "b" * 40


@dataclass(frozen=True)
class Run:
    commit: str | None
    result: str
    errors: tuple[str, ...] = ()
    actions: dict[str, str] = field(default_factory=dict)


def job(state: str) -> LiveJob:
    return LiveJob(id="j" * 32, state=state, reason="datum failed: exit 3" if state ==
                   "JOB_FAILURE" else "", total=1, processed=1, skipped=0, failed=0,
                   pipeline_version=0)


def report(commit: str, **health: tuple[Health, str | None]) -> StatusReport:
    return StatusReport(tuple(
        PipelineStatus(name, Sync.SYNCED, h, health_reason=f"{name} {h}",
                       job=job(js) if js else None)
        for name, (h, js) in health.items()), "src", commit)


def states(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.context, e.state) for e in events]


def test_good_commit_sequence_and_no_repeats() -> None:
    cs = CommitStatuses()
    assert states(cs.started(A)) == [("sync", "pending")]
    run = Run(A, "applied", actions={"up": "create"})
    first = cs.finished(run, report(A, up=(Health.PROGRESSING, "JOB_RUNNING")))
    assert states(first) == [("sync", "succeeded"), ("health", "pending")]
    assert cs.finished(run, report(A, up=(Health.PROGRESSING, "JOB_RUNNING"))) == []
    done = cs.finished(Run(A, "unchanged"), report(A, up=(Health.HEALTHY, "JOB_SUCCESS")))
    assert states(done) == [("health", "succeeded")]
    assert cs.started(A) == []  # every later interval run: nothing new
    assert cs.finished(Run(A, "unchanged"), report(A, up=(Health.HEALTHY, "JOB_SUCCESS"))) == []


def test_invalid_commit_fails_with_the_first_error_line_once() -> None:
    cs = CommitStatuses()
    cs.started(B)
    bad = Run(B, "invalid", ("specs/pipelines/up.yaml:3: transform: bad\nmore", "second"))
    [event] = cs.finished(bad, None)
    assert (event.state, event.message) == ("failed", "invalid: specs/pipelines/up.yaml:3: "
                                            "transform: bad")
    assert cs.started(B) == [] and cs.finished(bad, None) == []


def test_failing_commit_retried_never_loops() -> None:
    cs = CommitStatuses()
    failed = Run(A, "failed", ("pachd unreachable",))
    posted = [e for _ in range(5) for e in cs.started(A) + cs.finished(failed, None)]
    assert states(posted) == [("sync", "pending"), ("sync", "failed")]
    assert states(cs.finished(Run(A, "applied"), None)) == [("sync", "succeeded"),
                                                            ("health", "pending")]


def test_partial_names_the_conflicts() -> None:
    cs = CommitStatuses()
    [sync, _] = cs.finished(Run(A, "partial", ("owned: owned by another source",),
                                {"owned": "conflict", "up": "create"}), None)
    assert sync.state == "failed" and "skipped owned" in sync.message


def test_degraded_health_names_pipeline_and_reason() -> None:
    cs = CommitStatuses()
    run = Run(A, "applied",
              actions={"up": "create", "bad": "update+reprocess", "same": "unchanged"})
    events = cs.finished(run, report(A, up=(Health.HEALTHY, "JOB_SUCCESS"),
                                     bad=(Health.DEGRADED, "JOB_FAILURE"),
                                     same=(Health.DEGRADED, "JOB_FAILURE")))
    health = events[-1]
    assert (health.context, health.state) == ("health", "failed")
    assert "bad: bad Degraded" in health.message and "same" not in health.message


def test_no_job_counts_as_healthy_only_after_settling() -> None:
    cs = CommitStatuses(settle_checks=2)
    run = Run(A, "applied", actions={"up": "update"})
    idle = report(A, up=(Health.HEALTHY, None))
    assert states(cs.finished(run, idle)) == [("sync", "succeeded"), ("health", "pending")]
    assert cs.finished(Run(A, "unchanged"), idle) == []
    assert states(cs.finished(Run(A, "unchanged"), idle)) == [("health", "succeeded")]


def test_new_commit_moves_health_and_old_report_is_ignored() -> None:
    cs = CommitStatuses()
    cs.finished(Run(A, "applied", actions={"up": "create"}), None)
    events = cs.finished(Run(B, "applied", actions={"up": "update"}),
                         report(A, up=(Health.HEALTHY, "JOB_SUCCESS")))
    assert [(e.commit, e.context, e.state) for e in events] == [
        (B, "sync", "succeeded"), (B, "health", "pending")]


def test_memory_is_bounded() -> None:
    cs = CommitStatuses(remembered=8)
    for i in range(100):
        cs.started(f"{i:040x}")
    assert len(cs._last) == 8


def test_health_pending_comes_first_even_when_jobs_are_done_at_the_first_check() -> None:
    cs = CommitStatuses()
    events = cs.finished(Run(A, "applied", actions={"up": "create"}),
                         report(A, up=(Health.HEALTHY, "JOB_SUCCESS")))
    assert states(events) == [("sync", "succeeded"), ("health", "pending"),
                              ("health", "succeeded")]


def test_a_settled_health_is_never_reopened_by_later_jobs() -> None:
    """Jobs that later data starts are not of the commit's commit set: once its health has
    answered (succeeded or failed), new jobs running or failing post nothing for that commit."""
    for final, js in ((Health.HEALTHY, "JOB_SUCCESS"), (Health.DEGRADED, "JOB_FAILURE")):
        cs = CommitStatuses()
        cs.started(A)
        run = Run(A, "applied", actions={"up": "create"})
        cs.finished(run, report(A, up=(Health.PROGRESSING, "JOB_RUNNING")))
        settled = cs.finished(Run(A, "unchanged"), report(A, up=(final, js)))
        assert states(settled) == [("health", "succeeded" if final == Health.HEALTHY
                                    else "failed")]
        for later in ((Health.PROGRESSING, "JOB_RUNNING"), (Health.DEGRADED, "JOB_FAILURE"),
                      (Health.HEALTHY, "JOB_SUCCESS")):
            assert cs.finished(Run(A, "unchanged"), report(A, up=later)) == []
