"""localpachd transactions: calls carrying `pach-transaction` are recorded and applied together,
atomically, at FinishTransaction (nothing applied when one call fails), as Pachyderm does."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import python_pachyderm
from python_pachyderm.proto.v2.pfs import pfs_pb2
from python_pachyderm.proto.v2.transaction import transaction_pb2


def _repos(c: Any) -> list[str]:
    return sorted(r.repo.name for r in c.list_repo())


def test_transaction_applies_everything_at_finish_with_one_commit_set(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("src")
    txn = c.start_transaction()
    c.transaction_id = txn.id
    c.create_repo("a", description="in txn")
    c.create_repo("b")
    commit_a = c.start_commit("a", "master")
    commit_src = c.start_commit("src", "master")
    c.transaction_id = None
    assert _repos(c) == ["src"]  # nothing applied yet
    info = c.inspect_transaction(txn)
    assert len(info.requests) == 4
    assert info.requests[0].create_repo.repo.name == "a"
    assert info.responses[2].commit.id == commit_a.id
    assert [t.transaction.id for t in c.list_transaction()] == [txn.id]
    done = c.finish_transaction(txn)
    assert len(done.requests) == 4
    assert _repos(c) == ["a", "b", "src"]
    assert c.inspect_repo("a").description == "in txn"
    assert commit_a.id == commit_src.id == txn.id  # the transaction's ID is the commit set
    assert sorted(i.commit.branch.repo.name for i in c.inspect_commit(commit_a.id)) == ["a", "src"]
    assert len(c.list_transaction()) == 0


def test_failing_call_is_rejected_and_context_manager_applies_nothing(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("exists")
    with pytest.raises(grpc.RpcError) as exc:
        with c.transaction():
            c.create_repo("x1")
            c.create_branch("x1", "dev")
            c.create_repo("exists")  # fails when recorded (dry run), so the block raises
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert _repos(c) == ["exists"]
    assert len(c.list_transaction()) == 0  # the client deleted it


def test_conflict_at_finish_rolls_back_everything(pach_client: Any, localpachd: Any) -> None:
    c = pach_client
    txn = c.start_transaction()
    tc = python_pachyderm.Client(host=localpachd.host, port=localpachd.port, transaction_id=txn.id)
    tc.create_repo("first")
    tc.create_repo("second")
    tc.start_commit("first", "master")
    c.create_repo("second")  # created outside the transaction meanwhile
    with pytest.raises(grpc.RpcError) as exc:
        c.finish_transaction(txn)
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert exc.value.details() == (
        "error running request 2 of 3: repo default/second already exists")
    assert _repos(c) == ["second"]  # "first" and its commit were not applied
    assert list(c.list_commit()) == []
    assert len(c.list_transaction()) == 1  # kept, as Pachyderm does: delete or retry it
    c.delete_transaction(txn)


def test_delete_transactions_and_batch(pach_client: Any) -> None:
    c = pach_client
    t1 = c.start_transaction()
    c.start_transaction()
    c.delete_transaction(t1)
    assert len(c.list_transaction()) == 1
    with pytest.raises(grpc.RpcError) as exc:
        c.inspect_transaction(t1)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    c.delete_all_transactions()
    assert len(c.list_transaction()) == 0
    req = transaction_pb2.TransactionRequest(
        create_repo=pfs_pb2.CreateRepoRequest(repo=pfs_pb2.Repo(name="batched", type="user"))
    )
    info = c.batch_transaction([req])
    assert len(info.responses) == 1 and _repos(c) == ["batched"]


def test_two_commits_in_one_repo_in_one_transaction_are_refused(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    with pytest.raises(grpc.RpcError) as exc:
        with c.transaction():
            c.start_commit("r", "master")
            c.start_commit("r", "dev")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already has a commit in this transaction" in exc.value.details()
    assert list(c.list_commit("r", all=True)) == []


def test_commits_on_two_inputs_in_one_transaction_share_one_downstream_commit(
        pach_client: Any) -> None:
    c = pach_client
    for r in ("a", "b", "out"):
        c.create_repo(r)
    c.create_branch("a", "master")
    c.create_branch("b", "master")
    c.create_branch("out", "master", provenance=[
        pfs_pb2.Branch(repo=pfs_pb2.Repo(name=n, type="user"), name="master") for n in "ab"])
    c.finish_commit(("out", "master"))
    with c.transaction() as txn:
        c.start_commit("a", "master")
        c.start_commit("b", "master")
    out = next(c.inspect_commit(("out", "master")))
    assert out.commit.id == txn.id
    assert sorted((p.branch.repo.name, p.id) for p in out.direct_provenance) == [
        ("a", txn.id), ("b", txn.id)]
