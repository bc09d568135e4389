"""localpachd down during the agent's runs: the real sync_once reports Transient, the runner
backs off (growing delays) while always retrying the newest commit, and converges once the
server is back on the same port and data dir. Real git remote, real localpachd subprocess."""

from __future__ import annotations

from pathlib import Path

import python_pachyderm
from helpers.pachd import LocalPachdProcess
from runner_gitops import UpperGitOps, pipeline_info

from agent.runner import BackoffPolicy, Runner, RunnerConfig
from agent.sync import SyncOptions, sync_once


def test_outage_backs_off_and_converges_on_the_newest_commit(
    tmp_path: Path, pachd_process: LocalPachdProcess
) -> None:
    repo = UpperGitOps(tmp_path / "git")
    first = repo.commit("v1")
    opts = SyncOptions(source=str(repo.remote), branch="main", pachd=pachd_process.address,
                       cache_dir=tmp_path / "cache")
    backoff = BackoffPolicy(initial_s=0.5, factor=2, max_s=2)
    runner = Runner(opts, sync_once, config=RunnerConfig(interval_s=3600, jitter=0,
                                                         backoff=backoff))
    runner.start()
    try:
        assert runner.wait_for(lambda s: s.runs >= 1, timeout=120)
        assert runner.status.last_applied_commit == first

        pachd_process.stop()
        second = repo.commit("v2")
        runner.trigger("push")
        assert runner.wait_for(lambda s: s.consecutive_failures >= 2, timeout=120)
        s = runner.status
        assert s.last_attempt is not None and s.last_attempt.error_kind == "Transient"
        assert s.last_attempt.commit == second  # git still works: the newest commit is tried
        assert s.backoff_s >= 1.0 and s.last_applied_commit == first
        assert "pachd" in s.last_attempt.errors[0]

        third = repo.commit("v3")  # pushed during the outage: retries pick it up
        assert runner.wait_for(lambda s: s.last_attempt is not None
                               and s.last_attempt.commit == third, timeout=120)
        assert runner.status.last_applied_commit == first

        pachd_process.start()  # same port, same data dir
        assert runner.wait_for(lambda s: s.last_applied_commit == third, timeout=120)
        s = runner.status
        assert s.consecutive_failures == 0 and s.backoff_s == 0
        failed = runner.metrics.registry.get_sample_value("pachsync_sync_total",
                                                          {"result": "failed"})
        assert failed is not None and failed >= 3
    finally:
        runner.stop(wait=True)
    client = python_pachyderm.Client(host="127.0.0.1", port=pachd_process.port)
    description, annotations = pipeline_info(client, "upper")
    assert description == "v3" and annotations["pachsync.io/source-commit"] == third
