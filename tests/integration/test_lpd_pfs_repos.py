"""localpachd PFS: projects, repos and branches through the unmodified python-pachyderm client."""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
from python_pachyderm.proto.v2.pfs import pfs_pb2


def _code(exc: pytest.ExceptionInfo[Any]) -> grpc.StatusCode:
    return exc.value.code()  # type: ignore[no-any-return]


def _branch(repo: str, name: str = "master", project: str = "default") -> pfs_pb2.Branch:
    return pfs_pb2.Branch(
        repo=pfs_pb2.Repo(name=repo, type="user", project=pfs_pb2.Project(name=project)), name=name
    )


def test_projects(pach_client: Any) -> None:
    c = pach_client
    assert [p.project.name for p in c.list_project()] == ["default"]
    c.create_project("ml", description="models")
    info = c.inspect_project("ml")
    assert info.description == "models" and info.created_at.seconds > 0
    with pytest.raises(grpc.RpcError) as exc:
        c.create_project("ml")
    assert _code(exc) == grpc.StatusCode.ALREADY_EXISTS
    c.create_project("ml", description="v2", update=True)
    assert c.inspect_project("ml").description == "v2"
    c.create_repo("data", project_name="ml")
    with pytest.raises(grpc.RpcError) as exc:
        c.delete_project("ml")
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
    c.delete_project("ml", force=True)
    assert [p.project.name for p in c.list_project()] == ["default"]
    with pytest.raises(grpc.RpcError) as exc:
        c.inspect_project("ml")
    assert _code(exc) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        c.create_repo("x", project_name="nope")
    assert 'project "nope" not found' in exc.value.details()


def test_repos_create_inspect_list_delete(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("images", description="raw images")
    c.create_repo("labels")
    info = c.inspect_repo("images")
    assert (info.repo.name, info.repo.project.name, info.description) == (
        "images",
        "default",
        "raw images",
    )
    with pytest.raises(grpc.RpcError) as exc:
        c.create_repo("images")
    assert _code(exc) == grpc.StatusCode.ALREADY_EXISTS
    assert "repo default/images already exists" in exc.value.details()
    c.create_repo("images", description="updated", update=True)
    assert c.inspect_repo("images").description == "updated"
    assert sorted(r.repo.name for r in c.list_repo()) == ["images", "labels"]
    c.put_file_bytes(("images", "master"), "/a.bin", b"x" * 1000)
    assert c.inspect_repo("images").details.size_bytes == 1000
    assert c.inspect_repo("images").size_bytes_upper_bound == 1000
    c.delete_repo("labels")
    assert [r.repo.name for r in c.list_repo()] == ["images"]
    with pytest.raises(grpc.RpcError) as exc:
        c.inspect_repo("labels")
    assert _code(exc) == grpc.StatusCode.NOT_FOUND
    assert exc.value.details() == "repo default/labels not found"
    c.delete_repo("labels")  # deleting a missing repo succeeds, as in Pachyderm 2.7
    with pytest.raises(grpc.RpcError) as exc:
        c.create_repo("bad name!")
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT


def test_delete_repo_with_downstream_needs_force(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("up")
    c.create_repo("down")
    c.create_branch("down", "master", provenance=[_branch("up")])
    with pytest.raises(grpc.RpcError) as exc:
        c.delete_repo("up")
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
    c.delete_repo("up", force=True)
    assert [r.repo.name for r in c.list_repo()] == ["down"]
    assert list(c.inspect_branch("down", "master").provenance) == []


def test_branches_newest_first_head_and_provenance(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    c.put_file_bytes(("r", "master"), "/f", b"1")
    first = c.inspect_branch("r", "master").head
    c.put_file_bytes(("r", "master"), "/f", b"2")
    c.create_branch("r", "stable", head_commit=("r", first.id))
    c.create_branch("r", "dev")
    assert [b.branch.name for b in c.list_branch("r")] == ["dev", "stable", "master"]
    assert [b.branch.name for b in c.list_branch("r", reverse=True)] == ["master", "stable", "dev"]
    assert c.inspect_branch("r", "stable").head.id == first.id
    c.create_branch("r", "copy", head_commit=("r", first.id), new_commit=True)
    copy_head = c.inspect_branch("r", "copy").head.id
    assert copy_head != first.id and c.get_file(("r", "copy"), "/f").read() == b"1"
    c.delete_branch("r", "copy")
    assert c.get_file(("r", "stable"), "/f").read() == b"1"
    dev_head = c.inspect_branch("r", "dev").head
    # a new empty commit heads a branch created without one; ids are uuid4 hex, like Pachyderm's
    assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{19}", dev_head.id), dev_head.id
    assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{19}", first.id), first.id
    assert list(c.list_file(("r", "dev"), "/")) == []
    c.create_repo("out")
    c.create_branch("out", "master", provenance=[_branch("r")])
    out = c.inspect_branch("out", "master")
    assert [b.repo.name for b in out.provenance] == ["r"]
    assert [b.repo.name for b in out.direct_provenance] == ["r"]
    assert [b.repo.name for b in c.inspect_branch("r", "master").subvenance] == ["out"]
    with pytest.raises(grpc.RpcError) as exc:
        c.create_branch("r", "master", provenance=[_branch("out")])
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT
    c.delete_branch("r", "dev")
    assert [b.branch.name for b in c.list_branch("r")] == ["stable", "master"]
    with pytest.raises(grpc.RpcError) as exc:
        c.inspect_branch("r", "dev")
    assert exc.value.details() == 'branch "dev" not found in repo default/r'
    with pytest.raises(grpc.RpcError) as exc:
        c.delete_branch("r", "master")
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
    c.delete_branch("r", "master", force=True)
    assert list(c.inspect_branch("out", "master").provenance) == []


def test_delete_repos_and_delete_all(pach_client: Any) -> None:
    c = pach_client
    c.create_project("p2")
    c.create_repo("a")
    c.create_repo("b", project_name="p2")
    c.put_file_bytes(("a", "master"), "/x", b"x")
    c.delete_all()
    assert list(c.list_repo()) == []
    assert [p.project.name for p in c.list_project()] == ["default"]
    c.create_repo("a")  # the name is free again
    assert list(c.list_commit("a")) == []
