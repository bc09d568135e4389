"""The sync loop while a backoff wait is pending: an interval tick that arrives during a retry
never runs a second sync right after it (the retry's failure set a new wait), and the retry
time is jittered (never later than the schedule) so agents that failed together do not retry
in lockstep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from helpers.wait import wait_for
from runner_fakes import FakeSync, Step

from agent.runner import BackoffPolicy, Runner, RunnerConfig
from agent.sync import SyncOptions

OPTS = SyncOptions(source="https://git.example/gitops.git", branch="main")
FAIL = Step("failed", "Transient", ("pachd unreachable",))


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for r in made:
        r.stop(wait=True)


def _until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    wait_for(predicate, "the condition", timeout, interval=0.001)


@pytest.mark.parametrize("tick", ["interval", "interval-twice"])
def test_interval_tick_during_a_retry_waits_for_the_new_backoff(
        runners: list[Runner], tick: str) -> None:
    # 1st failure: a wait of 1 ms (the retry is due at once); 2nd failure: 1000 s.
    policy = BackoffPolicy(initial_s=0.001, factor=1_000_000, max_s=1000, jitter=0)
    fake = FakeSync(steps=[FAIL, FAIL, Step("applied")])
    runner = Runner(OPTS, fake, config=RunnerConfig(interval_s=3600, jitter=0, backoff=policy))
    runners.append(runner)
    runner.run_once()
    assert runner.status.consecutive_failures == 1
    retry_at = runner._retry_at  # 1 ms away: /status may already show it as past
    assert retry_at is not None
    _until(lambda: time.time() > retry_at)  # the retry is due: the retry job fires now
    fake.release.clear()
    retry = threading.Thread(target=runner._retry)
    retry.start()
    _until(lambda: fake.concurrent == 1)  # the retry run is inside sync_once
    requests = runner._requests
    ticks = [threading.Thread(target=runner._scheduled)
             for _ in range(2 if tick == "interval-twice" else 1)]
    for t in ticks:
        t.start()  # the interval job fires while the retry runs: queued behind it
    _until(lambda: runner._requests == requests + len(ticks))
    fake.release.set()
    retry.join(30)
    for t in ticks:
        t.join(30)
    assert fake.calls == 2, "an interval tick ran a sync during the backoff wait"
    s = runner.status
    assert s.consecutive_failures == 2 and s.backoff_s == 1000
    assert s.next_run_at is not None and s.next_run_at > time.time() + 900


def test_ticks_outside_a_wait_still_run(runners: list[Runner]) -> None:
    fake = FakeSync(steps=[Step("applied"), Step("applied")])
    runner = Runner(OPTS, fake, config=RunnerConfig(interval_s=3600, jitter=0))
    runners.append(runner)
    runner._scheduled()
    runner._scheduled()
    assert fake.calls == 2


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999])
def test_retry_time_is_jittered_within_the_schedule(runners: list[Runner], draw: float) -> None:
    policy = BackoffPolicy(initial_s=100, max_s=300, jitter=0.2)
    runner = Runner(OPTS, FakeSync(steps=[FAIL]), config=RunnerConfig(
        interval_s=3600, jitter=0, backoff=policy), rand=lambda: draw)
    runners.append(runner)
    before = time.time()
    runner.run_once()
    s = runner.status
    assert s.backoff_s == 100  # /status shows the schedule; the retry itself is spread
    assert s.next_run_at is not None
    expected = 100 * (1 - 0.2 * draw)
    assert before + expected - 1 <= s.next_run_at <= time.time() + expected + 1e-6


def test_jitter_never_exceeds_the_schedule_or_the_cap() -> None:
    policy = BackoffPolicy(initial_s=5, factor=2, max_s=300, jitter=0.5)
    for failures in range(1, 20):
        base = policy.delay(failures)
        for draw in (0.0, 0.3, 0.999999):
            got = policy.with_jitter(base, draw)
            assert base * 0.5 <= got <= base <= 300
    assert BackoffPolicy().jitter == 0.1
    assert BackoffPolicy(jitter=0).with_jitter(40, 0.9) == 40
    with pytest.raises(ValueError, match="invalid backoff policy"):
        BackoffPolicy(jitter=1.5)
