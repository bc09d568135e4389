"""Errors worded as Pachyderm 2.7 words them where clients branch on them (issue 16, item 5).

- A commit in a repo that does not exist is resolved as 2.7's `resolveCommit` does it, without
  looking at the repo: a branch reference reports `branch "master" not found in repo
  default/nope`, a commit ID `commit default/nope@ID not found`, in every read that resolves a
  commit (InspectCommit, InspectFile, ListFile, WalkFile, GlobFile, GetFile, DiffFile). So
  python-pachyderm's `path_exists` raises its ValueError for a missing repo, as for a missing
  branch, and returns False only for a missing file. InspectRepo, ListCommit, ListBranch,
  StartCommit and ModifyFile still say `repo default/nope not found`, as 2.7 does.
- RestartDatum with no running datum of the job matching the filters fails with 2.7's
  `datum matching filter [a b] could not be found for job ID ID` (the Go slice printed with %+v).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers.pachd import in_process_client
from helpers.wait import wait_for
from lpd_pps_helpers import last_job, pfs, put, sh_pipeline
from python_pachyderm.proto.v2.pfs import pfs_pb2
from python_pachyderm.proto.v2.pps import pps_pb2

UUID = "0123456789ab4def8123456789abcdef"  # a v4 UUID without dashes, as 2.7 checks


def _fails(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status of the RpcError `call` raises (python-pachyderm's get_file wraps it in a
    ConnectionError)."""
    with pytest.raises((grpc.RpcError, ConnectionError)) as exc:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    err = exc.value if isinstance(exc.value, grpc.RpcError) else exc.value.__cause__
    assert isinstance(err, grpc.RpcError), exc.value
    return err.code(), err.details()


def _reads(c: Any, commit: Any) -> dict[str, Callable[[], Any]]:
    """Every read that resolves `commit` (a (repo, branch) tuple or a Commit message)."""
    return {
        "inspect_commit": lambda: c.inspect_commit(commit),
        "inspect_file": lambda: c.inspect_file(commit, "/a"),
        "list_file": lambda: c.list_file(commit, "/"),
        "walk_file": lambda: c.walk_file(commit, "/"),
        "glob_file": lambda: c.glob_file(commit, "/*"),
        "get_file": lambda: c.get_file(commit, "/a").read(),
        "diff_file": lambda: c.diff_file(commit, "/"),
    }


def test_a_missing_repo_reports_the_branch_not_found(pach_client: Any) -> None:
    c = pach_client
    for name, call in _reads(c, ("nope", "master")).items():
        code, details = _fails(call)
        assert (code, details) == (grpc.StatusCode.NOT_FOUND,
                                   'branch "master" not found in repo default/nope'), name
    for name, call in _reads(c, ("nope", "dev")).items():
        assert _fails(call)[1] == 'branch "dev" not found in repo default/nope', name


def test_a_commit_id_in_a_missing_repo_reports_the_commit_not_found(pach_client: Any) -> None:
    commit = pfs_pb2.Commit(branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name="nope", type="user"),
                                                  name=""), id=UUID)
    for name, call in _reads(pach_client, commit).items():
        assert _fails(call) == (grpc.StatusCode.NOT_FOUND,
                                f"commit default/nope@{UUID} not found"), name


def test_path_exists_raises_for_a_missing_repo_or_branch_and_is_false_for_a_missing_file(
    pach_client: Any,
) -> None:
    c = pach_client
    with pytest.raises(ValueError, match="nonexistent commit"):
        c.path_exists(("nope", "master"), "/a")
    c.create_repo("r")
    c.put_file_bytes(("r", "master"), "/a", b"1")
    assert c.path_exists(("r", "master"), "/a") is True
    assert c.path_exists(("r", "master"), "/b") is False
    with pytest.raises(ValueError, match="nonexistent commit"):
        c.path_exists(("r", "nobranch"), "/a")


def test_repo_level_calls_still_report_the_repo_not_found(pach_client: Any) -> None:
    c = pach_client
    for call in (lambda: c.inspect_repo("nope"), lambda: c.list_commit("nope"),
                 lambda: c.list_branch("nope"), lambda: c.start_commit("nope", "master"),
                 lambda: c.put_file_bytes(("nope", "master"), "/a", b"1")):
        assert _fails(call) == (grpc.StatusCode.NOT_FOUND, "repo default/nope not found")


# ------------------------------------------------------------ RestartDatum

HANG = ('touch "$FLAG/running"', 'while [ ! -e "$FLAG/go" ]; do sleep 0.05; done',
        "echo ok > /pfs/out/done")


@pytest.fixture
def pps_client(tmp_path: Path) -> Iterator[Any]:
    with in_process_client(tmp_path / "pachd", runtime="subprocess") as client:
        yield client


def test_restart_datum_matching_nothing_fails_as_27_words_it(
    pps_client: Any, tmp_path: Path
) -> None:
    c, flag = pps_client, tmp_path / "flag"
    flag.mkdir()
    c.create_repo("data")
    put(c, "data", {"/a": "1"})
    sh_pipeline(c, "hang", pfs("data", "/*"), *HANG, transform={"env": {"FLAG": str(flag)}})
    job_id = wait_for(lambda: [j.job.id for j in c.list_job("hang")], "the job")[0]
    wait_for((flag / "running").exists, "the datum to run")  # a running datum matches none
    for filters, shown in ((["/nope"], "[/nope]"), (["/a", "/nope"], "[/a /nope]")):
        code, details = _fails(lambda f=filters: c.restart_datum("hang", job_id, f))
        assert code == grpc.StatusCode.UNKNOWN
        assert details == f"datum matching filter {shown} could not be found for job ID {job_id}"
    (flag / "go").touch()
    assert last_job(c, "hang").state == pps_pb2.JOB_SUCCESS
    code, details = _fails(lambda: c.restart_datum("hang", job_id))  # nothing runs any more
    assert details == f"datum matching filter [] could not be found for job ID {job_id}"
    code, details = _fails(lambda: c.restart_datum("hang", UUID))
    assert code == grpc.StatusCode.NOT_FOUND
