"""Pachyderm 2.7's guards on pipeline output repos: DeleteRepo of a pipeline's repo and a hand-made
FinishCommit of a job's output commit fail; DeletePipeline and the job engine still work."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.integration.lpd_pps_helpers import pfs, put, sh_pipeline, state, wait_all


@pytest.fixture
def client(pach_client: Any) -> Any:
    pach_client.create_repo("data")
    put(pach_client, "data", {"/a.txt": "a\n"})
    sh_pipeline(pach_client, "p", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/")
    wait_all(pach_client, "p")
    return pach_client


def _files(c: Any, repo: str) -> list[str]:
    return sorted(f.file.path for f in c.list_file((repo, "master"), "/"))


def test_delete_output_repo_is_refused(client: Any) -> None:
    c = client
    with pytest.raises(grpc.RpcError) as exc:
        c.delete_repo("p")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert exc.value.details() == (
        'error checking whether repo "default/p" can be deleted: cannot delete a repo '
        "associated with a pipeline - delete the pipeline instead")
    with pytest.raises(grpc.RpcError) as exc:
        with c.transaction():
            c.delete_repo("p")
    assert "delete the pipeline instead" in exc.value.details()
    assert sorted(r.repo.name for r in c.list_repo()) == ["data", "p"]
    put(c, "data", {"/b.txt": "b\n"})  # the pipeline keeps working
    assert [state(j) for j in wait_all(c, "p")] == ["JOB_SUCCESS", "JOB_SUCCESS"]
    assert _files(c, "p") == ["/a.txt", "/b.txt"]
    c.delete_repo("data", force=True)  # an input repo is not guarded (force skips provenance)
    c.delete_pipeline("p")  # DeletePipeline deletes its output repo itself
    assert [r.repo.name for r in c.list_repo()] == []


def test_finish_output_commit_by_hand_is_refused(client: Any) -> None:
    c = client
    c.stop_pipeline("p")
    put(c, "data", {"/b.txt": "b\n"})
    job = next(iter(c.list_job("p")))  # newest first
    assert state(job) == "JOB_CREATED"  # paused: its output commit stays open
    with pytest.raises(grpc.RpcError) as exc:
        c.finish_commit(("p", "master"))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert exc.value.details() == (
        "cannot finish a pipeline output or meta commit, use 'stop job' instead")
    assert next(iter(c.inspect_commit(("p", "master")))).finished.seconds == 0
    c.start_pipeline("p")
    assert [state(j) for j in wait_all(c, "p")] == ["JOB_SUCCESS", "JOB_SUCCESS"]
    assert _files(c, "p") == ["/a.txt", "/b.txt"]


def test_plain_repo_with_provenance_and_force_are_not_guarded(client: Any) -> None:
    c = client
    c.create_repo("copy")
    c.create_branch("copy", "master", provenance=[c.inspect_branch("data", "master").branch])
    put(c, "data", {"/c.txt": "c\n"})  # opens a commit in `copy` too: not a pipeline's
    c.finish_commit(("copy", "master"))
    c.delete_repo("copy")
    wait_all(c, "p")
    c.stop_pipeline("p")
    put(c, "data", {"/d.txt": "d\n"})
    c.finish_commit(("p", "master"), force=True)  # force skips the guard, as in Pachyderm
    assert next(iter(c.inspect_commit(("p", "master")))).finished.seconds > 0


def test_delete_repos_refuses_pipeline_repos(client: Any, localpachd: Any) -> None:
    """DeleteRepos (not sent by python-pachyderm 7.6: through the generated stub)."""
    from python_pachyderm.proto.v2.pfs import pfs_pb2, pfs_pb2_grpc

    with grpc.insecure_channel(localpachd.address) as channel:
        stub = pfs_pb2_grpc.APIStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.DeleteRepos(pfs_pb2.DeleteReposRequest(all=True))
        assert "delete the pipeline instead" in exc.value.details()
        assert sorted(r.repo.name for r in client.list_repo()) == ["data", "p"]  # all or nothing
        client.delete_pipeline("p")
        deleted = stub.DeleteRepos(pfs_pb2.DeleteReposRequest(all=True))
        assert [r.name for r in deleted.repos] == ["data"]
