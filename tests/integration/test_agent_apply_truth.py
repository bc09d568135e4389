"""The apply report matches what the cluster did, even when an answer is lost.

A call whose answer never arrives (RESOURCE_EXHAUSTED on an oversized response, UNAVAILABLE,
DEADLINE_EXCEEDED) may or may not have changed the cluster. The real localpachd commits; the
fault is injected in our own client wrapper (`agent.cluster.client.CountingClient`) around the
real call, so the answer is lost after (or before) the server acted. The report must say what
the cluster holds, and the next sync must converge to in-sync instead of repeating the change.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentcore_gitops import make_gitops, spec_files, sync
from helpers.gitops import GitOps

from agent.cli import main
from agent.cluster.client import CountingClient

LOST = [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED]


class _Lost(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"injected: the answer was lost ({self._code.name})"


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    return make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]


def lose_answer(monkeypatch: pytest.MonkeyPatch, method: str, code: grpc.StatusCode,
                after_server: bool = True) -> list[int]:
    """Make CountingClient.<method> raise `code`, after the real call (the server acted) or
    instead of it (the request never arrived). Returns a list counting the injected faults."""
    real: Callable[..., Any] = getattr(CountingClient, method)
    hits: list[int] = []

    def faulty(self: Any, *args: Any, **kwargs: Any) -> Any:
        if after_server:
            real(self, *args, **kwargs)
        hits.append(1)
        raise _Lost(code)

    monkeypatch.setattr(CountingClient, method, faulty)
    return hits


def names(client: Any) -> set[str]:
    return {p.pipeline.name for p in client.list_pipeline()}


@pytest.mark.parametrize("code", LOST, ids=[c.name for c in LOST])
def test_a_committed_transaction_whose_answer_was_lost_is_reported_applied(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, code: grpc.StatusCode) -> None:
    hits = lose_answer(monkeypatch, "finish_transaction", code)
    res = sync(gitops, localpachd.address, tmp_path)
    assert hits == [1]
    assert names(pach_client) == {"copy", "count"}  # the server did commit
    assert (res.result, res.error_kind) == ("applied", None), res.errors
    assert res.actions == {"copy": "create", "count": "create"} and res.out_of_sync == 0
    assert any("re-observed" in e and code.name in e for e in res.errors), res.errors
    monkeypatch.undo()
    again = sync(gitops, localpachd.address, tmp_path)
    assert (again.result, again.out_of_sync) == ("unchanged", 0), again.actions
    assert set(again.actions.values()) == {"unchanged"}


def test_a_lost_answer_to_an_update_is_reported_applied_and_converges(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    gitops.push(spec_files(image="busybox:1.37.0", parallelism=2), "bump image")
    lose_answer(monkeypatch, "finish_transaction", grpc.StatusCode.RESOURCE_EXHAUSTED)
    res = sync(gitops, localpachd.address, tmp_path)
    assert res.result == "applied"
    assert res.actions == {"copy": "update+reprocess", "count": "update+reprocess"}
    info = next(iter(pach_client.inspect_pipeline("copy", details=True)))
    assert info.details.transform.image == "busybox:1.37.0"
    monkeypatch.undo()
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result == "unchanged" and again.drift_detected == 0, again.actions


@pytest.mark.parametrize("code", LOST, ids=[c.name for c in LOST])
def test_a_transaction_that_never_arrived_is_reported_not_applied(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, code: grpc.StatusCode) -> None:
    lose_answer(monkeypatch, "finish_transaction", code, after_server=False)
    res = sync(gitops, localpachd.address, tmp_path)
    assert (res.result, res.error_kind) == ("failed", "Transient"), res.errors
    assert "re-observed" in res.errors[0] and "nothing of it was applied" in res.errors[0]
    assert "input repo" in res.errors[0] and "raw" in res.errors[0]  # what phase 1 did
    assert names(pach_client) == set()
    # the unfinished transaction was deleted: it can never be committed behind our back
    assert list(pach_client.list_transaction()) == []
    monkeypatch.undo()
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result == "applied" and names(pach_client) == {"copy", "count"}


def test_when_the_cluster_cannot_be_re_observed_the_outcome_is_reported_unknown(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lose_answer(monkeypatch, "finish_transaction", grpc.StatusCode.UNAVAILABLE)
    real_list = CountingClient.list_pipeline
    calls: list[int] = []

    def list_then_fail(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:  # the plan's observation works, the re-observation does not
            raise _Lost(grpc.StatusCode.UNAVAILABLE)
        return real_list(self, *args, **kwargs)

    monkeypatch.setattr(CountingClient, "list_pipeline", list_then_fail)
    monkeypatch.setattr(CountingClient, "delete_transaction", lambda self, txn: (_ for _ in ())
                        .throw(_Lost(grpc.StatusCode.UNAVAILABLE)))
    res = sync(gitops, localpachd.address, tmp_path)
    assert (res.result, res.error_kind) == ("failed", "Transient")
    assert "outcome unknown" in res.errors[0], res.errors
    monkeypatch.undo()
    again = sync(gitops, localpachd.address, tmp_path)
    assert again.result in ("applied", "unchanged") and again.out_of_sync == 0
    assert names(pach_client) == {"copy", "count"}


@pytest.mark.parametrize("code", LOST, ids=[c.name for c in LOST])
def test_lost_answers_to_repo_creation_and_deletion_are_settled_by_looking(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, code: grpc.StatusCode) -> None:
    lose_answer(monkeypatch, "create_repo", code)
    res = sync(gitops, localpachd.address, tmp_path)
    assert res.result == "applied", res.errors  # the repo exists: apply went on
    assert names(pach_client) == {"copy", "count"}
    monkeypatch.undo()
    gitops.push({**spec_files(count=False), "specs/pipelines/count.yaml": None}, "drop count")
    lose_answer(monkeypatch, "delete_pipeline", code)
    pruned = sync(gitops, localpachd.address, tmp_path, prune=True)
    assert pruned.result == "applied" and pruned.actions["count"] == "delete", pruned.errors
    assert names(pach_client) == {"copy"}
    monkeypatch.undo()
    assert sync(gitops, localpachd.address, tmp_path, prune=True).result == "unchanged"


def test_a_failure_after_partial_progress_says_what_was_applied(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert sync(gitops, localpachd.address, tmp_path).result == "applied"
    gitops.push({**spec_files(image="busybox:1.37.0", count=False),
                 "specs/pipelines/count.yaml": None}, "bump copy, drop count")
    lose_answer(monkeypatch, "delete_pipeline", grpc.StatusCode.UNAVAILABLE, after_server=False)
    res = sync(gitops, localpachd.address, tmp_path, prune=True)
    assert (res.result, res.error_kind) == ("failed", "Transient")
    assert names(pach_client) == {"copy", "count"}  # phase 2 applied, phase 3 did not
    assert "applied before the failure" in res.errors[0] and "copy" in res.errors[0], res.errors


def test_pachsync_apply_exits_0_when_the_lost_transaction_was_committed(
        gitops: GitOps, localpachd: Any, pach_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lose_answer(monkeypatch, "finish_transaction", grpc.StatusCode.RESOURCE_EXHAUSTED)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["apply", "--source", str(gitops.remote), "--cache-dir",
                     str(tmp_path / "c"), "--pachd", localpachd.address])
    assert code == 0, out.getvalue()
    assert names(pach_client) == {"copy", "count"}
    assert "2 pipeline(s) created/updated" in out.getvalue()
