"""The sync loop with a scripted sync function: stall on invalid commits, backoff after
failures, one run at a time, coalesced triggers, crash safety, redacted errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from runner_fakes import FakeSync, Step

from agent.runner import BackoffPolicy, Runner, RunnerConfig
from agent.sync import SyncOptions

OPTS = SyncOptions(source="https://git.example/gitops.git", branch="main")
BAD = "specs/pipelines/model.yaml:12: transform.image: must be a string"


def metric(runner: Runner, name: str, **labels: str) -> float:
    value = runner.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for r in made:
        r.stop(wait=True)


def make(fake: FakeSync, made: list[Runner], **config: object) -> Runner:
    cfg = RunnerConfig(interval_s=3600, jitter=0.0, **config)  # type: ignore[arg-type]
    runner = Runner(OPTS, fake, config=cfg, secrets=["tok-SECRET"])
    made.append(runner)
    return runner


def test_run_once_records_status_and_metrics(runners: list[Runner]) -> None:
    fake = FakeSync(steps=[Step("applied", actions={"split": "create", "model": "create"})])
    runner = make(fake, runners)
    result = runner.run_once()
    assert result is not None and result.result == "applied"
    s = runner.status
    assert s.ready and s.last_applied_commit == "c1" and s.runs == 1
    assert metric(runner, "pachsync_sync_total", result="applied") == 1
    assert metric(runner, "pachsync_sync_duration_seconds_count") == 1
    assert metric(runner, "pachsync_last_success_timestamp_seconds") > 0


def test_invalid_commit_is_fetched_but_not_rerun_until_a_new_commit(runners: list[Runner]
                                                                    ) -> None:
    fake = FakeSync(head="bad", steps=[Step("invalid", "SpecInvalid", (BAD,))])
    runner = make(fake, runners)
    runner.run_once()
    assert runner.status.stalled_commit == "bad"
    for _ in range(3):  # the head did not move: fetched, refused by the gate, not counted
        runner.run_once()
    assert fake.calls == 4 and fake.seen == ["bad"] * 4
    s = runner.status
    assert s.stalled_checks == 3 and s.last_attempt and s.last_attempt.errors == (BAD,)
    assert metric(runner, "pachsync_sync_total", result="invalid") == 1
    assert metric(runner, "pachsync_stalled") == 1
    assert s.backoff_s == 0
    fake.head = "fixed"
    fake.steps = [Step("applied", actions={"model": "update+reprocess"})]
    runner.run_once()
    assert runner.status.stalled_commit is None and runner.status.last_applied_commit == "fixed"
    assert metric(runner, "pachsync_stalled") == 0


def test_failures_move_the_next_run_by_the_backoff_and_success_resets_it(
        runners: list[Runner]) -> None:
    fake = FakeSync(steps=[Step("failed", "Transient", ("pachd unreachable",))] * 2)
    runner = make(fake, runners, backoff=BackoffPolicy(initial_s=100, max_s=150))
    runner.start()
    assert runner.wait_for(lambda s: s.runs == 1, timeout=30)
    now = time.time()
    s = runner.status
    assert s.consecutive_failures == 1 and s.backoff_s == 100
    assert s.next_run_at is not None and now + 80 < s.next_run_at < now + 101
    runner.trigger("test")
    assert runner.wait_for(lambda s: s.runs == 2, timeout=30)
    s = runner.status
    assert s.backoff_s == 150  # capped
    assert s.next_run_at is not None and time.time() + 130 < s.next_run_at < time.time() + 151
    assert metric(runner, "pachsync_backoff_seconds") == 150
    runner.trigger("test")  # a webhook does not wait for the backoff
    assert runner.wait_for(lambda s: s.runs == 3, timeout=30)
    s = runner.status
    assert s.backoff_s == 0 and s.next_run_at is not None
    assert s.next_run_at > time.time() + 3000  # back on the normal interval
    assert metric(runner, "pachsync_sync_total", result="failed") == 2
    assert metric(runner, "pachsync_consecutive_failures") == 0


def test_fetch_failures_are_counted(runners: list[Runner]) -> None:
    fake = FakeSync(steps=[Step("failed", "Transient", ("git: could not resolve host",),
                                commit_none=True)])
    runner = make(fake, runners)
    runner.run_once()
    assert metric(runner, "pachsync_git_fetch_failures_total") == 1
    assert metric(runner, "pachsync_sync_errors_total", kind="Transient") == 1


def test_burst_of_triggers_during_a_run_costs_one_extra_run(runners: list[Runner]) -> None:
    fake = FakeSync()
    fake.release.clear()  # the first (interval) run hangs until released
    runner = make(fake, runners)
    runner.start()
    deadline = time.time() + 30
    while fake.calls < 1 and time.time() < deadline:
        time.sleep(0.01)
    for _ in range(5):
        assert runner.trigger("burst")
    fake.release.set()
    assert runner.wait_for(lambda s: s.runs >= 2, timeout=30)
    runner.stop(wait=True)
    assert fake.calls == 2 and fake.max_concurrent == 1


def test_a_crashing_sync_is_a_failed_run_not_a_dead_loop(runners: list[Runner]) -> None:
    def boom(_: SyncOptions) -> object:
        raise RuntimeError("bug below the runner with tok-SECRET inside")

    runner = Runner(OPTS, boom, config=RunnerConfig(interval_s=3600), secrets=["tok-SECRET"])
    runners.append(runner)
    result = runner.run_once()
    assert result is not None and result.result == "failed" and result.error_kind == "Error"
    s = runner.status
    assert s.consecutive_failures == 1 and s.last_attempt is not None
    assert "tok-SECRET" not in " ".join(s.last_attempt.errors)


def test_errors_shown_in_status_never_contain_secrets(runners: list[Runner]) -> None:
    fake = FakeSync(steps=[Step("failed", "Transient",
                                ("fetch https://x:tok-SECRET@git.example failed",))])
    runner = make(fake, runners)
    runner.run_once()
    assert runner.status.last_attempt is not None
    assert runner.status.last_attempt.errors == ("fetch https://x:***@git.example failed",)


def test_signature_hook_runs_after_the_stall_gate(runners: list[Runner]) -> None:
    from agent.source.verify import SignatureInvalid

    checked: list[str] = []

    def verify(_path: object, sha: str) -> None:
        checked.append(sha)
        if sha == "unsigned":
            raise SignatureInvalid(sha, "the commit is not signed")

    fake = FakeSync(head="unsigned")
    runner = Runner(OPTS, fake, config=RunnerConfig(interval_s=3600), verify=verify)
    runners.append(runner)
    result = runner.run_once()
    assert result is not None and result.error_kind == "SignatureInvalid"
    runner.run_once()  # same head: refused by the gate before the signature is checked again
    assert checked == ["unsigned"] and runner.status.stalled_commit == "unsigned"
    fake.head = "signed"
    assert (runner.run_once() or result).result == "unchanged"
    assert checked == ["unsigned", "signed"]


def test_interval_job_is_coalesced_single_instance_with_jitter(runners: list[Runner]) -> None:
    fake = FakeSync()
    runner = Runner(OPTS, fake, config=RunnerConfig(interval_s=60, jitter=0.1))
    runners.append(runner)
    runner.start()
    assert runner.wait_for(lambda s: s.runs == 1, timeout=30)  # first run at start
    scheduler = runner._scheduler
    assert scheduler is not None
    job = scheduler.get_job("sync")
    assert (job.max_instances, job.coalesce) == (1, True)
    assert job.trigger.interval.total_seconds() == 60 and job.trigger.jitter == 6.0
    nxt = runner.status.next_run_at
    assert nxt is not None and time.time() + 50 < nxt <= time.time() + 66
