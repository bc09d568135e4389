"""GlobFile with pathological globs against long file names answers at once and never holds up
other clients: a ListRepo from another connection answers while GlobFiles of several shapes
run. A real `localpachd serve` subprocess (a backtracking matcher would hold its GIL for hours;
only a separate process can be stopped then).
"""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest
from helpers.pachd import HOST, LocalPachdProcess
from python_pachyderm.proto.v2.pfs import pfs_pb2, pfs_pb2_grpc

SHAPES = ["*a*a*a*a*a*ab", "**a**a**a**a**ab", "{a,a}" * 30 + "*b", "[a]*" * 20 + "b",
          "{a*,{a*,{a*,a*}}}" * 5 + "b", "(*a)(*a)(*a)(*a)(*a)b"]
LENGTHS = (100, 200, 10_000)
DEADLINE = 120.0  # seconds; today's server answers each call in milliseconds


def _stub(server: LocalPachdProcess) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(f"{HOST}:{server.port}")
    return channel, pfs_pb2_grpc.APIStub(channel)


def _commit(branch: str = "master") -> pfs_pb2.Commit:
    repo = pfs_pb2.Repo(name="r", type="user", project=pfs_pb2.Project(name="default"))
    return pfs_pb2.Commit(branch=pfs_pb2.Branch(repo=repo, name=branch))


def _glob(stub: Any, pattern: str) -> list[str]:
    req = pfs_pb2.GlobFileRequest(commit=_commit(), pattern=pattern)
    return [fi.file.path for fi in stub.GlobFile(req, timeout=DEADLINE)]


@pytest.fixture
def names(pachd_process: LocalPachdProcess) -> LocalPachdProcess:
    """Repo r: for each length n, /n<n>/ holds a name of n a's and one of n-1 a's then b."""
    from helpers.pachd import client

    c = client(pachd_process.port)
    c.create_repo("r")
    with c.commit("r", "master") as commit:
        for n in LENGTHS:
            c.put_file_bytes(commit, f"/n{n}/" + "a" * n, b"x")
            c.put_file_bytes(commit, f"/n{n}/" + "a" * (n - 1) + "b", b"x")
    return pachd_process


def test_pathological_glob_file_answers_and_others_are_served(names: LocalPachdProcess) -> None:
    results: dict[tuple[int, str], list[str] | BaseException] = {}

    def run(n: int, shape: str) -> None:
        channel, stub = _stub(names)
        try:
            results[(n, shape)] = _glob(stub, f"/n{n}/{shape}")
        except BaseException as exc:  # noqa: BLE001 (asserted below)
            results[(n, shape)] = exc
        finally:
            channel.close()

    threads = [threading.Thread(target=run, args=(n, s)) for n in LENGTHS for s in SHAPES]
    for th in threads:
        th.start()
    channel, stub = _stub(names)  # another client, while the globs run
    try:
        repos = list(stub.ListRepo(pfs_pb2.ListRepoRequest(), timeout=DEADLINE))
    finally:
        channel.close()
    for th in threads:
        th.join()
    assert [r.repo.name for r in repos] == ["r"]
    for (n, shape), found in results.items():
        assert found == [f"/n{n}/" + "a" * (n - 1) + "b"], (n, shape, found)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("/./*", ["/n100/", "/n10000/", "/n200/"]),
    ("//n100/./a*b/", ["/n100/" + "a" * 99 + "b"]),
    ("/n100/../n100/*b", []),  # `..` stays a literal segment: no cleaned path has one
])
def test_glob_file_cleans_globs_as_datums_do(names: LocalPachdProcess, pattern: str,
                                             expected: list[str]) -> None:
    """One glob cleaner for GlobFile and datum globs: `/./*` is `/*` (GlobFile kept the `.`
    and matched nothing while datum listing cleaned it)."""
    channel, stub = _stub(names)
    try:
        assert _glob(stub, pattern) == expected
    finally:
        channel.close()
