"""localpachd PFS commits: start/finish, inspect with wait, list, subscribe, commit sets,
squash/drop, provenance propagation and the error field."""

from __future__ import annotations

import re
import threading
from typing import Any

import grpc
import pytest
from python_pachyderm.proto.v2.pfs import pfs_pb2

UUID = re.compile(r"^[0-9a-f]{12}4[0-9a-f]{19}$")


def _branch(repo: str, name: str = "master") -> pfs_pb2.Branch:
    return pfs_pb2.Branch(repo=pfs_pb2.Repo(name=repo, type="user"), name=name)


def test_start_finish_inspect_list(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    commit = c.start_commit("r", "master", description="first")
    assert UUID.match(commit.id)
    with pytest.raises(grpc.RpcError) as exc:
        c.start_commit("r", "master")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert re.search(r"parent commit .* has not been finished", exc.value.details())
    c.put_file_bytes(commit, "/a", b"abc")
    info = next(c.inspect_commit(commit))
    assert info.finished.seconds == 0 and info.description == "first"
    c.finish_commit(commit)
    with pytest.raises(grpc.RpcError) as exc:
        c.finish_commit(commit)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with c.commit("r", "master") as second:
        c.put_file_bytes(second, "/b", b"de")
    info = next(c.inspect_commit(("r", "master")))
    assert info.commit.id == second.id and info.parent_commit.id == commit.id
    assert info.finished.seconds > 0 and info.details.size_bytes == 5
    assert info.origin.kind == pfs_pb2.USER and info.commit.branch.name == "master"
    assert [x.commit.id for x in c.list_commit("r")] == [second.id, commit.id]
    assert [x.commit.id for x in c.list_commit("r", reverse=True)] == [commit.id, second.id]
    assert [x.commit.id for x in c.list_commit("r", number=1)] == [second.id]
    assert [x.commit.id for x in c.list_commit("r", to_commit=("r", commit.id))] == [commit.id]
    assert [x.commit.id for x in c.list_commit("r", from_commit=("r", commit.id))] == [second.id]
    assert next(c.inspect_commit(("r", "master^"))).commit.id == commit.id
    first_info = next(c.inspect_commit(("r", commit.id)))
    assert [k.id for k in first_info.child_commits] == [second.id]
    with pytest.raises(grpc.RpcError) as exc:
        next(c.inspect_commit(("r", "nobranch")))
    assert exc.value.details() == 'branch "nobranch" not found in repo default/r'
    with pytest.raises(grpc.RpcError) as exc:
        next(c.inspect_commit(("r", "0" * 12 + "4" + "0" * 19)))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_start_commit_with_explicit_parent(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    c.put_file_bytes(("r", "master"), "/v", b"1")
    base = c.inspect_branch("r", "master").head.id
    c.put_file_bytes(("r", "master"), "/v", b"2")
    fork = c.start_commit("r", "exp", parent=base)
    c.finish_commit(fork)
    assert c.get_file(("r", "exp"), "/v").read() == b"1"
    assert next(c.inspect_commit(fork)).parent_commit.id == base


def test_wait_commit_and_subscribe(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    commit = c.start_commit("r", "master")
    result: list[Any] = []
    t = threading.Thread(
        target=lambda: result.extend(c.inspect_commit(commit, pfs_pb2.CommitState.FINISHED))
    )
    t.start()
    t.join(0.3)
    assert t.is_alive()  # still waiting: the commit is open
    c.finish_commit(commit)
    t.join(10)
    assert len(result) == 1 and result[0].finished.seconds > 0
    stream = c.subscribe_commit("r", "master", state=pfs_pb2.CommitState.FINISHED)
    assert next(stream).commit.id == commit.id
    c.put_file_bytes(("r", "master"), "/x", b"x")
    newest = c.inspect_branch("r", "master").head.id
    assert next(stream).commit.id == newest
    stream.cancel()
    assert [x.commit.id for x in c.wait_commit(newest)] == [newest]


def test_provenance_commit_sets_and_error(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("in")
    c.create_repo("mid")
    c.create_repo("out")
    c.create_branch("in", "master")
    c.create_branch("mid", "master", provenance=[_branch("in")])
    c.create_branch("out", "master", provenance=[_branch("mid")])
    for repo in ("mid", "out"):  # the commits CreateBranch opened
        c.finish_commit((repo, "master"))
    c.put_file_bytes(("in", "master"), "/data", b"1")
    cs = c.inspect_branch("in", "master").head.id
    infos = list(c.inspect_commit(cs))
    assert sorted(i.commit.branch.repo.name for i in infos) == ["in", "mid", "out"]
    assert {i.commit.id for i in infos} == {cs}
    mid = next(c.inspect_commit(("mid", "master")))
    assert mid.origin.kind == pfs_pb2.AUTO and mid.finished.seconds == 0
    assert [(p.branch.repo.name, p.id) for p in mid.direct_provenance] == [("in", cs)]
    waiter: list[Any] = []
    t = threading.Thread(target=lambda: waiter.extend(c.wait_commit(cs)))
    t.start()
    c.finish_commit(("mid", "master"))
    t.join(0.3)
    assert t.is_alive()
    c.finish_commit(("out", "master"), error="datum failed")
    t.join(10)
    assert len(waiter) == 3
    assert next(c.inspect_commit(("out", "master"))).error == "datum failed"
    sets = list(c.list_commit())
    assert sets[0].commit_set.id == cs and len(sets[0].commits) == 3
    assert list(c.list_commit("out")) == []  # origin_kind USER by default: AUTO hidden
    assert [x.commit.id for x in c.list_commit("out", origin_kind=pfs_pb2.AUTO)][0] == cs
    with pytest.raises(grpc.RpcError) as exc:
        c.start_commit("mid", "master")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_squash_and_drop_commit_sets(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    ids = []
    for i in range(3):
        c.put_file_bytes(("r", "master"), f"/f{i}", str(i).encode())
        ids.append(c.inspect_branch("r", "master").head.id)
    with pytest.raises(grpc.RpcError) as exc:
        c.drop_commit(ids[1])  # has a child
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as exc:
        c.squash_commit(ids[2])  # no child: data would be lost
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    c.squash_commit(ids[1])
    assert [x.commit.id for x in c.list_commit("r")] == [ids[2], ids[0]]
    assert next(c.inspect_commit(("r", ids[2]))).parent_commit.id == ids[0]
    assert sorted(f.file.path for f in c.list_file(("r", "master"), "/")) == ["/f0", "/f1", "/f2"]
    c.drop_commit(ids[2])
    assert c.inspect_branch("r", "master").head.id == ids[0]
    assert [f.file.path for f in c.list_file(("r", "master"), "/")] == ["/f0"]
    with pytest.raises(grpc.RpcError) as exc:
        c.drop_commit(ids[2])
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_find_commits_clear_commit_and_finished_commit_is_immutable(
    pach_client: Any, localpachd: Any
) -> None:
    c = pach_client
    c.create_repo("r")
    ids = []
    for body in (b"1", None, b"2"):
        with c.commit("r", "master") as commit:
            c.put_file_bytes(commit, "/f" if body else "/other", body or b"o")
        ids.append(commit.id)
    with pytest.raises(grpc.RpcError) as exc:
        c.put_file_bytes(("r", ids[0]), "/late", b"x")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "has already finished" in exc.value.details()
    # the client's find_commits() calls the wrong stub, so use the generated one directly
    from python_pachyderm.proto.v2.pfs import pfs_pb2_grpc

    stub = pfs_pb2_grpc.APIStub(grpc.insecure_channel(localpachd.address))
    start = pfs_pb2.Commit(branch=_branch("r"), id="")
    found = list(stub.FindCommits(pfs_pb2.FindCommitsRequest(start=start, file_path="/f")))
    assert [r.found_commit.id for r in found if r.HasField("found_commit")] == [ids[2], ids[0]]
    assert found[-1].last_searched_commit.id == ids[0] and found[-1].commits_searched == 3
    open_commit = c.start_commit("r", "master")
    c.put_file_bytes(open_commit, "/tmp", b"t")
    stub.ClearCommit(
        pfs_pb2.ClearCommitRequest(commit=pfs_pb2.Commit(branch=_branch("r"), id=open_commit.id))
    )
    assert list(c.list_file(open_commit, "/")) == []
    c.finish_commit(open_commit)


def test_ready_wait_and_list_commit_set_per_project(pach_client: Any) -> None:
    c = pach_client
    c.create_project("p")
    c.create_repo("in", project_name="p")
    c.create_repo("other")
    c.put_file_bytes(("other", "master"), "/x", b"x")
    with c.commit("in", "master", project_name="p") as commit:
        c.put_file_bytes(commit, "/a", b"a")
    info = next(c.inspect_commit(commit, pfs_pb2.CommitState.READY))
    assert info.commit.branch.repo.project.name == "p"
    sets = list(c.list_commit(project_name="p"))
    assert [s.commit_set.id for s in sets] == [commit.id]
    assert len(list(c.list_commit())) == 2


def test_list_and_subscribe_filters_as_pachyderm(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    c.create_repo("out")
    c.create_branch("out", "master", provenance=[_branch("r")])
    ids = []
    for i in range(3):
        c.put_file_bytes(("r", "master"), "/f", str(i).encode())
        ids.append(c.inspect_branch("r", "master").head.id)
    stream = c.subscribe_commit("r", "master", from_commit=("r", ids[0]))
    assert next(stream).commit.id == ids[1]  # `from` itself is not sent
    stream.cancel()
    with pytest.raises(grpc.RpcError) as exc:
        list(c.list_commit("r", to_commit=("r", ids[2]), reverse=True))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(list(c.list_commit("out"))) == 0
    assert len(list(c.list_commit("out", all=True))) == 4  # CreateBranch's + one per input commit
    with pytest.raises(grpc.RpcError) as exc:
        c.create_branch("r", "dev", provenance=[_branch("r")])
    assert "cannot be in the provenance of its own branch" in exc.value.details()


def test_provenance_change_propagates_downstream(pach_client: Any) -> None:
    c = pach_client
    for r in ("a", "b", "mid", "out"):
        c.create_repo(r)
    c.put_file_bytes(("a", "master"), "/x", b"x")
    c.put_file_bytes(("b", "master"), "/y", b"y")
    c.create_branch("mid", "master", provenance=[_branch("a")])
    c.create_branch("out", "master", provenance=[_branch("mid")])
    for repo in ("mid", "out"):
        c.finish_commit((repo, "master"))
    c.create_branch("mid", "master", provenance=[_branch("a"), _branch("b")])  # mid gains b
    mid = next(c.inspect_commit(("mid", "master")))
    out = next(c.inspect_commit(("out", "master")))
    assert mid.commit.id == out.commit.id and out.finished.seconds == 0
    assert sorted(p.branch.repo.name for p in mid.direct_provenance) == ["a", "b"]
    assert [b.repo.name for b in c.inspect_branch("out", "master").provenance] == [
        "mid", "a", "b"]
