"""Pure status model: how each sync result moves last-applied, stall, backoff and pipelines."""

from __future__ import annotations

from typing import Any

from runner_fakes import disposition_for

from agent.runner.backoff import BackoffPolicy
from agent.runner.status import (
    AgentStatus,
    exit_code,
    record_result,
    record_stalled_check,
    to_dict,
)
from agent.sync import SyncResult

POLICY = BackoffPolicy(initial_s=5, max_s=300)


def res(result: str, commit: str | None = "c1", kind: str | None = None,
        actions: dict[str, str] | None = None, errors: tuple[str, ...] = (),
        **kw: Any) -> SyncResult:
    return SyncResult(commit=commit, result=result, started_at=100.0, duration_s=0.5,
                      actions=actions or {}, errors=errors, error_kind=kind,
                      drift_detected=kw.get("drift", 0), out_of_sync=kw.get("oos", 0),
                      rpc_count=0, disposition=disposition_for(result, kind))


def fold(*results: SyncResult) -> AgentStatus:
    status = AgentStatus(source="src", branch="main")
    for i, r in enumerate(results):
        status = record_result(status, r, trigger="interval", now=1000.0 + i, policy=POLICY)
    return status


def test_initial_status_is_not_ready() -> None:
    doc = to_dict(AgentStatus(source="src", branch="main"))
    assert doc["ready"] is False and doc["lastAttempted"] is None


def test_applied_sets_last_applied_and_pipeline_states() -> None:
    s = fold(res("applied", actions={"split": "create", "model": "update+reprocess",
                                     "old": "delete", "kept": "orphan", "x": "conflict"}))
    assert s.ready and s.runs == 1 and s.last_applied_commit == "c1"
    assert s.last_success_at == 1000.0 and s.backoff_s == 0
    states = {name: p.state for name, p in s.pipelines}
    assert states == {"split": "Synced", "model": "Synced", "old": "Pruned",
                      "kept": "OutOfSync", "x": "Conflict"}


def test_failures_back_off_exponentially_and_reset_on_success() -> None:
    s = fold(res("applied"), *[res("failed", kind="Transient")] * 3)
    assert s.consecutive_failures == 3 and s.backoff_s == 20
    assert s.last_applied_commit == "c1"  # cluster keeps the last good commit
    s = record_result(s, res("unchanged", commit="c2"), trigger="interval", now=2000,
                      policy=POLICY)
    assert s.consecutive_failures == 0 and s.backoff_s == 0 and s.last_applied_commit == "c2"


def test_invalid_commit_stalls_with_file_line_until_a_good_commit() -> None:
    err = "specs/pipelines/model.yaml:7: transform.image: must be a string"
    s = fold(res("applied", commit="good"), res("invalid", commit="bad", kind="SpecInvalid",
                                                errors=(err,)))
    assert s.stalled_commit == "bad" and err in (s.stalled_reason or "")
    assert s.backoff_s == 0  # invalid specs are not retried faster: they wait for a commit
    assert s.last_applied_commit == "good"
    doc = to_dict(s)
    assert doc["stalled"]["commit"] == "bad" and doc["lastAttempted"]["errors"] == [err]
    s = record_stalled_check(s, now=3000)
    assert s.stalled_checks == 1 and s.stalled_commit == "bad"
    s = record_result(s, res("applied", commit="fixed"), trigger="webhook", now=4000,
                      policy=POLICY)
    assert s.stalled_commit is None and s.last_applied_commit == "fixed"


def test_signature_failure_stalls_instead_of_backing_off() -> None:
    s = fold(res("failed", commit="unsigned", kind="SignatureInvalid"))
    assert s.stalled_commit == "unsigned" and s.consecutive_failures == 0


def test_fetch_failure_keeps_stall_and_pipelines() -> None:
    s = fold(res("applied", actions={"split": "unchanged"}),
             res("invalid", commit="bad", kind="SpecInvalid"),
             res("failed", commit=None, kind="Transient"))
    assert s.stalled_commit == "bad" and s.consecutive_failures == 1
    assert dict(s.pipelines)["split"].state == "Synced"


def test_report_only_drift_shows_drifted() -> None:
    status = AgentStatus(source="src", branch="main")
    s = record_result(status, res("unchanged", actions={"model": "drift"}, drift=1),
                      trigger="interval", now=1.0, policy=POLICY, self_heal=False)
    assert dict(s.pipelines)["model"].state == "Drifted"


def test_exit_codes() -> None:
    assert [exit_code(res(r)) for r in ("applied", "unchanged")] == [0, 0]
    assert exit_code(res("invalid", kind="SpecInvalid")) == 1
    assert exit_code(res("failed", kind="SignatureInvalid")) == 1
    assert exit_code(res("failed", kind="Transient")) == 2
    assert exit_code(res("failed", kind="Conflict")) == 2


def test_history_keeps_the_last_runs_newest_first() -> None:
    s = fold(*[res("applied", commit=f"c{i}") for i in range(15)])
    doc = to_dict(s)
    assert [h["commit"] for h in doc["history"]] == [f"c{i}" for i in range(14, 4, -1)]
    assert doc["history"][0]["result"] == "applied" and s.runs == 15


def test_health_report_joins_the_last_actions_and_keeps_pruned_ones() -> None:
    from agent.plan.health import Health, PipelineStatus, StatusReport, Sync
    from agent.runner.status import record_health

    s = fold(res("applied", actions={"split": "update+reprocess", "old": "delete"}))
    report = StatusReport((PipelineStatus("split", Sync.SYNCED, Health.PROGRESSING),
                           PipelineStatus("new", Sync.OUT_OF_SYNC, Health.MISSING)), "src", "c1")
    s = record_health(s, report, None, now=5.0)
    pipelines = to_dict(s)["pipelines"]
    assert pipelines["old"] == {"action": "delete", "state": "Pruned", "commit": "c1"}
    split = pipelines["split"]
    assert (split["action"], split["state"], split["sync"], split["health"]) == \
        ("update+reprocess", "Synced", "Synced", "Progressing")
    assert (pipelines["new"]["action"], pipelines["new"]["state"]) == (None, "OutOfSync")
    assert to_dict(s)["health"]["checkedAt"] == 5.0
    failed = record_health(s, None, "pachd unreachable", now=6.0)
    assert failed.health == report and failed.health_checked_at == 5.0
    assert record_health(failed, report, None, now=7.0).health_error is None


def test_a_partial_run_counts_as_applied_not_as_success_nor_failure() -> None:
    """A conflict kept one pipeline back: the rest of the commit is in the cluster (last applied
    moves), but the run is no success, is not retried with backoff (a retry cannot resolve a
    conflict), does not stall, and `agent --once` exits 2."""
    ok = res("applied", commit="c0", actions={"copy": "create"})
    partial = res("partial", commit="c1", kind="Conflict",
                  actions={"copy": "update", "taken": "conflict"},
                  errors=("taken: owned by another source",))
    status = fold(ok, partial)
    assert status.last_applied_commit == "c1"
    assert status.last_success_at == 1000.0  # the earlier full success, not the partial run
    assert status.consecutive_failures == 0 and status.backoff_s == 0
    assert status.stalled_commit is None
    assert dict(status.pipelines)["taken"].state == "Conflict"
    assert dict(status.pipelines)["copy"].state == "Synced"
    assert exit_code(partial) == 2


def test_metrics_count_partial_runs_and_conflicts() -> None:
    from agent.runner.metrics import AgentMetrics

    metrics = AgentMetrics("src", "main")
    partial = SyncResult(commit="c1", result="partial", started_at=1.0, duration_s=0.1,
                         actions={"a": "conflict", "b": "create"}, errors=("a: taken",),
                         error_kind="Conflict", drift_detected=0, out_of_sync=1, rpc_count=0,
                         conflicts=1, disposition=disposition_for("partial", "Conflict"))
    metrics.observe_result(partial, failures=0, backoff_s=0.0, stalled=False, now=5.0)
    text = metrics.render().decode()
    assert 'pachsync_sync_total{result="partial"} 1.0' in text
    assert "pachsync_conflicts 1.0" in text
