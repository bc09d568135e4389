"""localpachd server basics: version, health, cluster info, the auth stubs and delete_all(),
UNIMPLEMENTED naming unknown methods, the --auth-token mode, and concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from grpc_health.v1 import health_pb2

from localpachd.server import start


def _in_threads(work: Callable[[int], None], count: int) -> list[BaseException]:
    """Runs work(0) … work(count - 1) in parallel threads; what they raised."""
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001 (returned to the test)
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_version_health_cluster(pach_client: Any) -> None:
    c = pach_client
    v = c.get_remote_version()
    assert (v.major, v.minor) == (2, 7)
    assert c.health_check().status == health_pb2.HealthCheckResponse.SERVING
    info = c.inspect_cluster()
    assert len(info.id) == 32 and info.id == c.inspect_cluster().id


def test_auth_services_not_activated_and_delete_all(pach_client: Any) -> None:
    c = pach_client
    for call in (c.who_am_i, c.get_auth_configuration, c.list_idp_connectors):
        with pytest.raises(Exception) as exc:
            call()
        assert "the auth service is not activated" in str(exc.value)
    c.create_repo("a")
    c.put_file_bytes(("a", "master"), "/f", b"x")
    c.start_transaction()
    c.delete_all()
    assert list(c.list_repo()) == []
    assert len(c.list_transaction()) == 0


def test_unknown_methods_are_unimplemented_with_their_name(localpachd: Any) -> None:
    channel = grpc.insecure_channel(localpachd.address)
    for method in ("/pfs_v2.API/RunLoadTestDefault", "/debug_v2.Debug/Profile",
                   "/pps_v2.API/ActivateAuth"):  # a generated default of another module
        with pytest.raises(grpc.RpcError) as exc:
            channel.unary_unary(method)(b"")
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert method in exc.value.details()
    channel.close()


def test_auth_token_mode(tmp_path: Path) -> None:
    with start(tmp_path / "pachd", port=0, auth_token="s3cret") as server:
        anonymous = python_pachyderm.Client(host=server.host, port=server.port)
        with pytest.raises(grpc.RpcError) as exc:
            list(anonymous.list_repo())
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        wrong = python_pachyderm.Client(host=server.host, port=server.port, auth_token="nope")
        with pytest.raises(grpc.RpcError) as exc:
            wrong.create_repo("x")
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        good = python_pachyderm.Client(host=server.host, port=server.port, auth_token="s3cret")
        good.create_repo("x")
        assert [r.repo.name for r in good.list_repo()] == ["x"]


def test_concurrent_writers_do_not_corrupt_state(pach_client: Any, localpachd: Any) -> None:
    c = pach_client
    for r in ("r0", "r1"):
        c.create_repo(r)

    def writer(n: int) -> None:
        client = python_pachyderm.Client(host=localpachd.host, port=localpachd.port)
        repo, branch = f"r{n % 2}", f"b{n}"
        for i in range(8):
            client.put_file_bytes((repo, branch), f"/w{n}/f{i}", f"{n}-{i}".encode() * 100)

    assert _in_threads(writer, 6) == []
    for n in range(6):
        repo, branch = f"r{n % 2}", f"b{n}"
        assert len(list(c.list_commit(repo, to_commit=(repo, branch)))) == 8
        files = list(c.list_file((repo, branch), f"/w{n}"))
        assert len(files) == 8
        assert c.get_file((repo, branch), f"/w{n}/f7").read() == f"{n}-7".encode() * 100
    assert len(list(c.list_commit("r0"))) == 24 and len(list(c.list_commit("r1"))) == 24
    assert list(c.fsck()) == []


def test_cli_refuses_busy_port_and_busy_data_dir(localpachd: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    busy_port = subprocess.run(
        [
            sys.executable,
            "-m",
            "localpachd",
            "serve",
            "--port",
            str(localpachd.port),
            "--data-dir",
            str(tmp_path / "other"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert busy_port.returncode == 2 and "is the port in use" in busy_port.stderr
    with pytest.raises(OSError, match="in use by another localpachd"):
        start(localpachd.data_dir, port=0)
    help_out = subprocess.run(
        [sys.executable, "-m", "localpachd", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_out.returncode == 0 and "--max-parallelism" in help_out.stdout


def test_concurrent_writers_on_one_branch_lose_nothing(pach_client: Any, localpachd: Any) -> None:
    pach_client.create_repo("shared")

    def writer(n: int) -> None:
        client = python_pachyderm.Client(host=localpachd.host, port=localpachd.port)
        for i in range(5):
            client.put_file_bytes(("shared", "master"), f"/w{n}-{i}", b"x" * (n + 1))

    assert _in_threads(writer, 4) == []
    assert len(list(pach_client.list_commit("shared"))) == 20  # one commit per put, serialised
    assert len(list(pach_client.list_file(("shared", "master"), "/"))) == 20


def test_pps_guards_refuse_delete_repo_and_finish_commit(pach_client: Any, localpachd: Any) -> None:
    from localpachd import errors

    def guard_repo(tx: Any, project: str, repo: str) -> None:
        if repo == "owned":
            raise errors.FailedPrecondition(
                "cannot delete a repo associated with a pipeline - delete the pipeline instead")

    def guard_commit(tx: Any, commit: Any) -> None:
        if commit.repo == "owned":
            raise errors.FailedPrecondition(
                "cannot finish a pipeline output or meta commit, use 'stop job' instead")

    localpachd.ctx.delete_repo_guards.append(guard_repo)
    localpachd.ctx.finish_commit_guards.append(guard_commit)
    c = pach_client
    c.create_repo("owned")
    commit = c.start_commit("owned", "master")
    with pytest.raises(grpc.RpcError) as exc:
        c.finish_commit(commit)
    assert "use 'stop job' instead" in exc.value.details()
    c.finish_commit(commit, force=True)
    with pytest.raises(grpc.RpcError) as exc:
        c.delete_repo("owned")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    c.delete_repo("owned", force=True)
    assert list(c.list_repo()) == []
