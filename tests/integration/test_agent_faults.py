"""sync_once under faults: drift, an unmanaged pipeline in the way, a failing transaction, pachd
down.

Real git remote and real localpachd; the only fault injection patches our own client wrapper
(`agent.cluster.client.CountingClient`) to fail inside the transaction.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentcore_gitops import make_gitops, spec_files, sync
from google.protobuf import json_format
from helpers.gitops import GitOps
from helpers.jobs import wait_jobs
from helpers.pfs import put
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cli import main
from agent.cluster.client import CountingClient


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    return make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]


def _hand_update(client: Any, name: str, **changes: Any) -> None:
    """What `pachctl update pipeline` with an edited spec does: annotations kept."""
    info = next(iter(client.inspect_pipeline(name, details=True)))
    spec = json_format.MessageToDict(info.details, preserving_proto_field_name=True)
    keep = {f.name for f in pps_pb2.CreatePipelineRequest.DESCRIPTOR.fields}
    req = pps_pb2.CreatePipelineRequest(**{"pipeline": info.pipeline, "update": True})
    json_format.ParseDict({k: v for k, v in spec.items() if k in keep and k != "salt"}, req)
    json_format.ParseDict(changes, req)
    client.create_pipeline_from_request(req)


def _status(address: str) -> dict[str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", "--pachd", address, "--no-specs", "--format", "json"]) == 0
    return {r["name"]: r["sync"] for r in json.loads(out.getvalue())["pipelines"]}


def _names(client: Any) -> set[str]:
    return {p.pipeline.name for p in client.list_pipeline()}


def test_hand_change_is_drift_reverted_by_default(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    _hand_update(pach_client, "copy", parallelism_spec={"constant": 5})
    assert _status(localpachd.address) == {"copy": "Drifted", "count": "Synced"}
    report_only = sync(gitops, localpachd.address, tmp_path, self_heal=False)
    assert report_only.actions["copy"] == "drift" and report_only.drift_detected == 1
    assert report_only.result == "unchanged" and report_only.out_of_sync == 1
    healed = sync(gitops, localpachd.address, tmp_path)
    assert healed.actions == {"copy": "drift", "count": "unchanged"}
    assert healed.result == "applied" and healed.out_of_sync == 0
    diffs = {p["name"]: p["diffs"] for p in healed.plan["pipelines"]}["copy"]
    assert diffs == [{"path": "parallelism_spec.constant", "live": 5, "git": 1}]
    after = sync(gitops, localpachd.address, tmp_path)
    assert after.result == "unchanged" and after.drift_detected == 0
    assert _status(localpachd.address) == {"copy": "Synced", "count": "Synced"}


def test_unmanaged_pipeline_with_same_name_is_left_for_adoption(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    pach_client.create_repo("raw")
    pach_client.create_pipeline("count", transform=pps_pb2.Transform(cmd=["true"]),
                                input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="raw", glob="/")))
    res = sync(gitops, localpachd.address, tmp_path)
    assert res.result == "applied" and res.error_kind is None, res
    assert res.actions == {"copy": "create", "count": "adopt"} and res.out_of_sync == 1
    assert _names(pach_client) == {"copy", "count"}  # copy applied, the unmanaged one untouched
    count = next(iter(pach_client.inspect_pipeline("count", details=True)))
    assert not count.details.metadata.annotations and count.version == 1


class _Boom(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def details(self) -> str:
        return "injected failure"


def test_failure_inside_the_transaction_applies_nothing_and_next_run_converges(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = CountingClient.create_pipeline_from_request
    calls: list[str] = []

    def second_fails(self: Any, req: Any) -> None:
        calls.append(req.pipeline.name)
        if len(calls) == 2:
            raise _Boom()
        real(self, req)

    monkeypatch.setattr(CountingClient, "create_pipeline_from_request", second_fails)
    res = sync(gitops, localpachd.address, tmp_path)
    assert res.result == "failed" and res.error_kind == "Error"
    assert "injected failure" in res.errors[0] and calls == ["copy", "count"]
    assert res.actions == {"copy": "create", "count": "create"} and res.out_of_sync == 2
    assert _names(pach_client) == set()  # the first create was rolled back with the transaction
    assert "raw" in {r.repo.name for r in pach_client.list_repo()}  # phase 1 happened
    monkeypatch.setattr(CountingClient, "create_pipeline_from_request", real)
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result == "applied" and again.actions == {"copy": "create", "count": "create"}
    put(pach_client, "raw", {"/a": b"1"})
    assert wait_jobs(pach_client, ["count"])["count"].data_processed == 1


def test_pachd_down_is_transient_and_the_next_run_converges(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    down = sync(gitops, dead, tmp_path)
    assert down.result == "failed" and down.error_kind == "Transient"
    assert down.commit is not None and "listing repos" in down.errors[0]
    up = sync(gitops, localpachd.address, tmp_path)
    assert up.result == "applied" and _names(pach_client) == {"copy", "count"}


class _Unavailable(_Boom):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def test_failure_between_phases_is_completed_by_the_next_run(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    gitops.push({**spec_files(image="busybox:1.37.0", count=False),
                 "specs/pipelines/count.yaml": None}, "bump copy, drop count")
    real = CountingClient.delete_pipeline

    def down(self: Any, *args: Any, **kwargs: Any) -> None:
        raise _Unavailable()

    monkeypatch.setattr(CountingClient, "delete_pipeline", down)
    res = sync(gitops, localpachd.address, tmp_path, prune=True)
    assert res.result == "failed" and res.error_kind == "Transient"
    assert _names(pach_client) == {"copy", "count"}  # phase 2 applied, phase 3 did not
    monkeypatch.setattr(CountingClient, "delete_pipeline", real)
    done = sync(gitops, localpachd.address, tmp_path, prune=True)
    assert done.actions == {"copy": "unchanged", "count": "delete"} and done.result == "applied"
    assert _names(pach_client) == {"copy"}


def test_a_silent_pachd_cannot_hang_a_sync(gitops: GitOps, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHSYNC_RPC_TIMEOUT", "1")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        res = sync(gitops, f"127.0.0.1:{silent.getsockname()[1]}", tmp_path)
    assert res.result == "failed" and res.error_kind == "Transient", res.errors
    assert res.rpc_count == 1
