"""Pachyderm's message size limits in localpachd (issue 12, item 7, the server half).

Pachyderm 2.7 refuses request messages over 20 MiB (grpcutil.MaxMsgSize) with grpc-go's
RESOURCE_EXHAUSTED "grpc: received message larger than max (N vs. 20971520)", before any handler
runs; python-pachyderm 7.6 accepts responses up to 20 MiB. So, through the real client:
- a request over 20 MiB is refused with Pachyderm's error and nothing changes (directly, recorded
  into a transaction, or as a batch);
- whatever localpachd accepted it can answer back: a repo or pipeline stored from an accepted
  request is still listed and inspected (so unary requests keep room for the envelope), and a
  transaction that was applied is reported as applied, even when echoing its requests (which
  Pachyderm's FinishTransaction does) would not fit the client's 20 MiB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import python_pachyderm
from python_pachyderm.proto.v2.pps import pps_pb2
from python_pachyderm.proto.v2.transaction import transaction_pb2 as tpb

from localpachd.server import RunningServer, start

MIB = 1024 * 1024
LIMIT = 20 * MIB  # Pachyderm's grpcutil.MaxMsgSize and python-pachyderm's receive limit


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start(data_dir=tmp_path_factory.mktemp("limits") / "pachd", port=0)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[python_pachyderm.Client]:
    c = python_pachyderm.Client(host=server.host, port=server.port)
    c.delete_all()
    c.create_repo("in")
    yield c


def spec(name: str, description_bytes: int) -> pps_pb2.CreatePipelineRequest:
    return pps_pb2.CreatePipelineRequest(
        pipeline=pps_pb2.Pipeline(name=name), transform=pps_pb2.Transform(cmd=["true"]),
        input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="in", glob="/*")),
        description="d" * description_bytes)


def state(c: python_pachyderm.Client) -> tuple[list[str], list[str], int]:
    return (sorted(p.pipeline.name for p in c.list_pipeline()),
            sorted(r.repo.name for r in c.list_repo()), len(list(c.list_transaction())))


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def pachyderms_error(size: int) -> str:
    return f"grpc: received message larger than max ({size} vs. {LIMIT})"


def in_transaction(c: python_pachyderm.Client, req: Any) -> None:
    txn = c.start_transaction()
    c.transaction_id = txn.id
    try:
        c.create_pipeline_from_request(req)
    finally:
        c.transaction_id = None
        c.delete_transaction(txn)


def batch(c: python_pachyderm.Client, req: Any) -> None:
    c.batch_transaction([tpb.TransactionRequest(create_pipeline=req)])


@pytest.mark.parametrize("how", ["direct", "in_transaction", "batch"])
def test_a_25_mb_create_pipeline_is_refused_with_pachyderms_error_and_changes_nothing(
        client: python_pachyderm.Client, how: str) -> None:
    req = spec("big", 25_000_000)
    before = state(client)
    send = {"direct": client.create_pipeline_from_request,
            "in_transaction": lambda r: in_transaction(client, r),
            "batch": lambda r: batch(client, r)}[how]
    err = refused(lambda: send(req))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    size = req.ByteSize() if how != "batch" else tpb.BatchTransactionRequest(
        requests=[tpb.TransactionRequest(create_pipeline=req)]).ByteSize()
    assert err.details() == pachyderms_error(size)
    assert state(client) == before


def test_other_requests_over_20_mib_are_refused_the_same_way(
        client: python_pachyderm.Client) -> None:
    before = state(client)
    err = refused(lambda: client.create_repo("big", description="r" * (LIMIT + 1)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("grpc: received message larger than max (")
    assert state(client) == before


@pytest.mark.parametrize("size", [LIMIT - MIB - 4096, LIMIT - 64])
def test_whatever_was_accepted_can_be_listed_and_inspected(
        client: python_pachyderm.Client, size: int) -> None:
    """A request just under 20 MiB whose content comes back inside a larger message (RepoInfo,
    PipelineInfo, CommitInfo) is either refused up front or readable afterwards."""
    calls = {
        "repo": (lambda: client.create_repo("near-repo", description="r" * size),
                 lambda: (list(client.list_repo()), client.inspect_repo("near-repo"))),
        "pipeline": (lambda: client.create_pipeline_from_request(spec("near-pipeline", size)),
                     lambda: (list(client.list_pipeline(details=True)),
                              list(client.inspect_pipeline("near-pipeline", details=True)))),
        "commit": (lambda: client.start_commit("in", "master", description="c" * size),
                   lambda: (list(client.list_commit("in")),
                            list(client.inspect_commit(("in", "master"))))),
    }
    for what, (create, read) in calls.items():
        try:
            create()
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (what, exc)
            assert "1 MiB" in exc.details() and "smaller" in exc.details(), exc.details()
            continue
        read()  # raises if a stored message no longer fits what the client accepts


@pytest.mark.parametrize("n", [3, 5])
def test_a_transaction_of_5_mb_specs_that_was_applied_is_reported_as_applied(
        client: python_pachyderm.Client, n: int) -> None:
    """FinishTransaction echoes the requests as Pachyderm's does when they fit the client's
    20 MiB, and leaves them out when they do not: the client always sees the success."""
    names = [f"p{i}" for i in range(n)]
    txn = client.start_transaction()
    client.transaction_id = txn.id
    try:
        for name in names:
            client.create_pipeline_from_request(spec(name, 5_000_000))
    finally:
        client.transaction_id = None
    assert len(client.inspect_transaction(txn).responses) == n  # inspecting it fits, too
    finished = client.finish_transaction(txn)
    assert finished.transaction.id == txn.id and len(finished.responses) == n
    assert len(finished.requests) == (n if n * 5_000_000 < LIMIT else 0)
    assert state(client) == (names, sorted(["in", *names]), 0)


def test_the_clients_transaction_block_sees_its_big_transaction_succeed(
        client: python_pachyderm.Client) -> None:
    names = ["q0", "q1", "q2", "q3", "q4"]
    with client.transaction():
        for name in names:
            client.create_pipeline_from_request(spec(name, 5_000_000))
    assert state(client) == (names, sorted(["in", *names]), 0)


def test_a_batch_near_the_limit_is_applied_and_reported_as_applied(
        client: python_pachyderm.Client) -> None:
    reqs = [tpb.TransactionRequest(create_pipeline=spec(f"b{i}", 6_000_000)) for i in range(3)]
    info = client.batch_transaction(reqs)
    assert len(info.responses) == 3
    assert state(client)[0] == ["b0", "b1", "b2"]


def test_streamed_files_of_more_than_20_mib_still_go_both_ways(
        client: python_pachyderm.Client) -> None:
    """The client sends 19 MiB chunks (plus a header) and reads the file in chunks."""
    data = bytes(range(256)) * (45 * MIB // 256)
    with client.commit("in", "master") as c:
        client.put_file_bytes(c, "/big", data)
    assert client.get_file(c, "/big").read() == data
    assert client.inspect_file(c, "/big").size_bytes == len(data)
