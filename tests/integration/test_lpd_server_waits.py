"""Blocking waits cannot starve localpachd (issue 12, item 9).

More clients than the server has gRPC handler threads block in waits of every kind (InspectCommit
wait=FINISHED, InspectCommitSet wait, SubscribeCommit; InspectJob/InspectJobSet wait and GetLogs
follow on a running job). Waits take a bounded number of "wait slots" (and at most a share of
them per connection), so ordinary calls such as the FinishCommit that releases the waiters,
ListRepo, or a wait that need not block still answer; waiters beyond the bound are answered at
once with RESOURCE_EXHAUSTED and a message that says what to do.

No sleep stands in for synchronisation: the test waits on observable states (the server's
wait-slot counters, files a datum drops) with generous deadlines that only guard a hang.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.wait import wait_for
from python_pachyderm.proto.v2.pfs import pfs_pb2, pfs_pb2_grpc
from python_pachyderm.proto.v2.pps import pps_pb2, pps_pb2_grpc

from localpachd.server import RunningServer, start

HANG = 120.0  # seconds: only guards a hang; every step here takes well under a second


class Waiter(threading.Thread):
    """Runs one blocking call; `outcome` is "ok" or the refusal's (code, details)."""

    def __init__(self, kind: str, call: Callable[[], object]) -> None:
        super().__init__(daemon=True, name=f"waiter-{kind}")
        self.kind = kind
        self.call = call
        self.outcome: object = None

    def run(self) -> None:
        try:
            self.call()
            self.outcome = "ok"
        except grpc.RpcError as exc:
            self.outcome = (exc.code(), exc.details())


def finish_in_thread(fn: Callable[[], object]) -> None:
    """Run an ordinary call; fail (instead of hanging) if the server never answers it."""
    box: list[object] = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(HANG)
    assert box, "an ordinary call got no answer while waiters were blocked"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start(data_dir=tmp_path / "pachd", port=0)
    try:
        yield srv
    finally:
        srv.stop()


def own_connection(srv: RunningServer) -> grpc.Channel:
    """A channel with a TCP connection of its own (python-pachyderm clients of one process share
    one), so the server sees another peer."""
    return grpc.insecure_channel(srv.address, options=[("grpc.use_local_subchannel_pool", 1)])


def pfs_waiters(srv: RunningServer, client: Any, commit: Any, n_shared: int,
                n_conns: int, per_conn: int) -> list[Waiter]:
    """Waiters of three kinds on one open commit: `n_shared` through python-pachyderm clients
    (one shared connection) and `per_conn` on each of `n_conns` connections of their own."""
    repo, cid = commit.repo.name, commit.id

    def subscribe(c: Any) -> Callable[[], object]:
        def call() -> object:
            stream = c.subscribe_commit(repo, "master", state=pfs_pb2.FINISHED)
            try:
                return next(stream)
            finally:
                stream.cancel()
        return call

    def kinds(c: Any) -> list[tuple[str, Callable[[], object]]]:
        return [("inspect_commit", lambda: list(c.inspect_commit((repo, "master"),
                                                                 pfs_pb2.FINISHED))),
                ("inspect_commit_set", lambda: c.wait_commit(cid)),
                ("subscribe_commit", subscribe(c))]

    out = []
    for i in range(n_shared):
        kind, call = kinds(python_pachyderm.Client(host=srv.host, port=srv.port))[i % 3]
        out.append(Waiter(kind, call))
    for _ in range(n_conns):
        stub = pfs_pb2_grpc.APIStub(own_connection(srv))
        raw = [
            ("raw_inspect_commit", lambda s=stub: s.InspectCommit(pfs_pb2.InspectCommitRequest(
                commit=pfs_pb2.Commit(branch=pfs_pb2.Branch(repo=commit.repo, name="master")),
                wait=pfs_pb2.FINISHED), timeout=HANG)),
            ("raw_inspect_commit_set", lambda s=stub: list(s.InspectCommitSet(
                pfs_pb2.InspectCommitSetRequest(commit_set=pfs_pb2.CommitSet(id=cid), wait=True),
                timeout=HANG))),
        ]
        out.extend(Waiter(*raw[j % 2]) for j in range(per_conn))
    return out


def refused(waiters: list[Waiter]) -> list[Waiter]:
    return [w for w in waiters if w.outcome not in (None, "ok")]


def test_more_waiters_than_handler_threads_never_starve_finish_commit(
        server: RunningServer) -> None:
    slots = server.ctx.waits
    workers = server.ctx.config.workers
    assert slots.total < workers and slots.per_peer < slots.total  # the defaults keep threads
    client = python_pachyderm.Client(host=server.host, port=server.port)
    client.create_repo("done")
    with client.commit("done", "master") as finished:
        pass
    client.create_repo("data")
    commit = client.start_commit("data", "master")
    n_conns, per_conn = 8, 5
    n_shared = workers + 16 - n_conns * per_conn
    waiters = pfs_waiters(server, client, commit, n_shared, n_conns, per_conn)
    assert len(waiters) > workers
    for w in waiters:
        w.start()
    # Each waiter is admitted (holds a slot) or refused at once: wait until all are accounted.
    wait_for(lambda: slots.in_use + slots.refused == len(waiters), "every waiter to settle")
    assert slots.in_use == slots.total
    wait_for(lambda: len(refused(waiters)) == len(waiters) - slots.total, "refusals to arrive")
    for w in refused(waiters):
        code, details = w.outcome  # type: ignore[misc]
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (w.kind, w.outcome)
        assert "wait slots" in details and "retry" in details, details
    # Ordinary calls answer from another client while every wait slot is taken, and so does a
    # wait that needs no waiting (it never takes a slot).
    other = python_pachyderm.Client(host=server.host, port=server.port)
    finish_in_thread(lambda: [r.repo.name for r in other.list_repo()])
    finish_in_thread(lambda: list(other.inspect_commit(("done", finished.id), pfs_pb2.FINISHED)))
    finish_in_thread(lambda: other.finish_commit(commit))
    for w in waiters:
        w.join(HANG)
    assert not [w.kind for w in waiters if w.is_alive()], "admitted waiters did not return"
    assert sum(w.outcome == "ok" for w in waiters) == slots.total
    wait_for(lambda: slots.in_use == 0, "every wait slot to be released")


def test_one_connection_holds_at_most_its_share_of_the_wait_slots(
        server: RunningServer) -> None:
    slots = server.ctx.waits
    client = python_pachyderm.Client(host=server.host, port=server.port)
    client.create_repo("data")
    commit = client.start_commit("data", "master")
    waiters = pfs_waiters(server, client, commit, slots.per_peer + 6, 0, 0)
    for w in waiters:
        w.start()
    wait_for(lambda: len(refused(waiters)) == 6, "the connection's extra waiters to be refused")
    assert slots.in_use == slots.per_peer
    for w in refused(waiters):
        assert w.outcome[0] == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[index]
        assert "this connection" in w.outcome[1], w.outcome  # type: ignore[index]
    # Another connection still gets a slot: its wait is admitted and returns with the others.
    late = pfs_waiters(server, client, commit, 0, 1, 1)[0]
    late.start()
    wait_for(lambda: slots.in_use == slots.per_peer + 1, "the other connection's wait")
    client.finish_commit(commit)
    for w in [*waiters, late]:
        w.join(HANG)
    assert late.outcome == "ok"
    assert sum(w.outcome == "ok" for w in waiters) == slots.per_peer
    wait_for(lambda: slots.in_use == 0, "every wait slot to be released")


def test_a_stopping_server_releases_every_wait_and_health_watch(tmp_path: Path) -> None:
    srv = start(data_dir=tmp_path / "pachd", port=0, workers=8)
    slots = srv.ctx.waits
    client = python_pachyderm.Client(host=srv.host, port=srv.port)
    client.create_repo("data")
    commit = client.start_commit("data", "master")
    health = health_pb2_grpc.HealthStub(own_connection(srv))

    def watch() -> object:
        return list(health.Watch(health_pb2.HealthCheckRequest(), timeout=HANG))

    waiters = [Waiter("watch", watch), *pfs_waiters(srv, client, commit, 0, 3, 3)]
    for w in waiters:
        w.start()
    wait_for(lambda: slots.in_use + slots.refused == len(waiters), "every waiter to settle")
    assert slots.in_use == slots.total < 8
    srv.stop()
    for w in waiters:
        w.join(HANG)
    assert not [w.kind for w in waiters if w.is_alive()]
    assert slots.in_use == 0


# ---------------------------------------------------------------- pps waits on a running job

GATE_CMD = ('n=0; while [ ! -e "$GATE/go" ]; do n=$((n + 1)); [ $n -le 6000 ] || exit 3; '
            'touch "$GATE/running"; sleep 0.05; done; echo out > /pfs/out/x')


def test_job_waits_and_log_follows_are_bounded_and_released(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    srv = start(data_dir=tmp_path / "pachd", port=0, workers=12)
    try:
        slots = srv.ctx.waits
        client = python_pachyderm.Client(host=srv.host, port=srv.port)
        client.create_repo("in")
        client.create_pipeline(
            "gated", transform=pps_pb2.Transform(cmd=["sh", "-c", GATE_CMD],
                                                 env={"GATE": str(gate)}),
            input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="in", glob="/")))
        with client.commit("in", "master") as c:
            client.put_file_bytes(c, "/a", b"a")
        wait_for(lambda: (gate / "running").exists(), "the datum to run")
        job = wait_for(lambda: next(iter(client.list_job(pipeline_name="gated")), None),
                       "the job")
        job_id = job.job.id
        pps = [pps_pb2_grpc.APIStub(own_connection(srv)) for _ in range(4)]

        def kinds(s: Any) -> list[tuple[str, Callable[[], object]]]:
            j = pps_pb2.Job(pipeline=pps_pb2.Pipeline(name="gated"), id=job_id)
            return [
                ("inspect_job", lambda: s.InspectJob(pps_pb2.InspectJobRequest(
                    job=j, wait=True), timeout=HANG)),
                ("inspect_job_set", lambda: list(s.InspectJobSet(pps_pb2.InspectJobSetRequest(
                    job_set=pps_pb2.JobSet(id=job_id), wait=True), timeout=HANG))),
                ("get_logs_follow", lambda: list(s.GetLogs(pps_pb2.GetLogsRequest(
                    job=j, follow=True), timeout=HANG))),
            ]

        waiters = [Waiter(*kinds(s)[i % 3]) for i in range(3) for s in pps]
        for w in waiters:
            w.start()
        wait_for(lambda: slots.in_use + slots.refused == len(waiters), "every waiter to settle")
        assert slots.in_use == slots.total < 12
        assert len(refused(waiters)) == len(waiters) - slots.total
        finish_in_thread(lambda: list(client.list_pipeline()))
        (gate / "go").touch()
        for w in waiters:
            w.join(HANG)
        assert not [w.kind for w in waiters if w.is_alive()]
        assert sum(w.outcome == "ok" for w in waiters) == slots.total
        wait_for(lambda: slots.in_use == 0, "every wait slot to be released")
    finally:
        (gate / "go").touch()
        srv.stop()
