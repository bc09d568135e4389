"""Drift seen through the runner (real sync_once, real localpachd, real client): a pipeline
changed by hand is put back to git's spec by default, or only reported with report-only drift;
either way it is counted in pachsync_drift_detected_total and shown in /status."""

from __future__ import annotations

from pathlib import Path

import pytest
from python_pachyderm.proto.v2.pps import pps_pb2
from runner_gitops import UpperGitOps, pipeline_info

from agent.runner import Runner, RunnerConfig
from agent.runner.status import to_dict
from agent.sync import SyncOptions, sync_once


def hand_edit(client: object, name: str, description: str) -> None:
    """What `pachctl update pipeline` with an edited description does: same spec, new text,
    annotations kept (so the pipeline is still managed, but no longer equal to git)."""
    info = next(iter(client.inspect_pipeline(name, details=True)))  # type: ignore[attr-defined]
    d = info.details
    req = pps_pb2.CreatePipelineRequest(
        pipeline=info.pipeline, transform=d.transform, input=d.input, description=description,
        metadata=d.metadata, update=True)
    client.create_pipeline_from_request(req)  # type: ignore[attr-defined]
    assert pipeline_info(client, name)[0] == description


@pytest.mark.parametrize("self_heal", [True, False], ids=["revert", "report-only"])
def test_hand_change_is_detected_and_reverted_or_reported(
        tmp_path: Path, localpachd: object, pach_client: object, self_heal: bool) -> None:
    repo = UpperGitOps(tmp_path / "git")
    repo.commit("from git")
    opts = SyncOptions(source=str(repo.remote), pachd=localpachd.address,  # type: ignore[attr-defined]
                       cache_dir=tmp_path / "cache", self_heal=self_heal)
    runner = Runner(opts, sync_once, config=RunnerConfig(interval_s=3600, self_heal=self_heal))
    first = runner.run_once()
    assert first is not None and first.result == "applied", first.errors

    hand_edit(pach_client, "upper", "edited by hand")
    result = runner.run_once()
    assert result is not None and result.drift_detected == 1, result
    assert result.actions == {"upper": "drift"}
    drift = runner.metrics.registry.get_sample_value("pachsync_drift_detected_total")
    out_of_sync = runner.metrics.registry.get_sample_value("pachsync_pipelines_out_of_sync")
    pipeline = to_dict(runner.status)["pipelines"]["upper"]
    description = pipeline_info(pach_client, "upper")[0]
    if self_heal:
        assert result.result == "applied" and description == "from git"
        assert (drift, out_of_sync, pipeline["state"]) == (1, 0, "Synced")
        again = runner.run_once()  # converged: nothing left to revert
        assert again is not None and again.result == "unchanged" and again.drift_detected == 0
    else:
        assert description == "edited by hand"
        assert (drift, out_of_sync, pipeline["state"]) == (1, 1, "Drifted")
