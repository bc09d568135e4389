"""CreatePipeline / Inspect / List / Delete / Stop / Start through the real client."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from lpd_pps_helpers import last_job, pfs, put, sh_pipeline, state
from python_pachyderm.proto.v2.pps import pps_pb2


@pytest.fixture
def client(pach_client: Any) -> Any:
    pach_client.create_repo("data")
    put(pach_client, "data", {"/a.txt": "a\n"})
    return pach_client


def inspect(client: Any, name: str, details: bool = True) -> Any:
    return next(iter(client.inspect_pipeline(name, details=details)))


def test_create_stores_pachyderm_defaults_annotations_and_description(client: Any) -> None:
    client.create_pipeline(
        "copy",
        transform=pps_pb2.Transform(cmd=["sh"], stdin=["cp -r /pfs/data/. /pfs/out/"]),
        input=pfs("data", "*"),
        description="copies data",
        metadata=pps_pb2.Metadata(annotations={"pachsync.io/managed-by": "me"}),
    )
    info = inspect(client, "copy")
    d = info.details
    assert info.version == 1 and info.pipeline.project.name == "default"
    assert d.transform.image == "ubuntu:20.04" and d.output_branch == "master"
    assert d.datum_tries == 3 and d.reprocess_spec == "until_success"
    p = d.input.pfs
    assert (p.name, p.branch, p.repo_type, p.project, p.glob) == (
        "data", "master", "user", "default", "/*",
    )  # fmt: skip
    assert d.description == "copies data" and len(d.salt) > 0
    assert d.metadata.annotations["pachsync.io/managed-by"] == "me"
    assert not inspect(client, "copy", details=False).HasField("details")
    # output repo named after the pipeline, branch provenance on the input
    branch = client.inspect_branch("copy", "master")
    assert [(b.repo.name, b.name) for b in branch.direct_provenance] == [("data", "master")]
    assert state(last_job(client, "copy")) == "JOB_SUCCESS"


def test_create_twice_fails_update_bumps_version_and_keeps_salt(client: Any) -> None:
    sh_pipeline(client, "p", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/")
    with pytest.raises(grpc.RpcError) as err:
        sh_pipeline(client, "p", pfs("data", "/*"), "true")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert 'pipeline "default/p" already exists' in err.value.details()
    salt = inspect(client, "p").details.salt
    sh_pipeline(client, "p", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/", update=True, salt="x")
    assert (inspect(client, "p").version, inspect(client, "p").details.salt) == (2, salt)
    sh_pipeline(client, "p", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/", update=True,
                reprocess=True)  # fmt: skip
    info = inspect(client, "p")
    assert info.version == 3 and info.details.salt != salt
    history = list(client.inspect_pipeline("p", history=-1))
    assert [h.version for h in history] == [3, 2, 1]
    assert len(list(client.list_pipeline(history=1))) == 2
    # update of a missing pipeline creates it
    sh_pipeline(client, "fresh", pfs("data", "/"), "true", update=True)
    assert inspect(client, "fresh").version == 1


def test_dry_run_changes_nothing(client: Any) -> None:
    sh_pipeline(client, "dry", pfs("data", "/*"), "true", dry_run=True)
    assert list(client.list_pipeline()) == []
    assert "dry" not in [r.repo.name for r in client.list_repo()]


@pytest.mark.parametrize(
    ("name", "inp", "text"),
    [
        ("x" * 52, pfs("data", "/*"), "at most 51"),
        ("bad", pfs("data", ""), "glob"),
        ("bad", pfs("nope", "/*"), "repo default/nope not found"),
        ("bad", pps_pb2.Input(cross=[pfs("data", "/"), pfs("data", "/*")]), "more than once"),
    ],
)
def test_invalid_specs_are_refused(client: Any, name: str, inp: Any, text: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        sh_pipeline(client, name, inp, "true")
    assert text in err.value.details()
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert list(client.list_pipeline()) == []


def test_reprocess_spec_is_validated(client: Any) -> None:
    with pytest.raises(grpc.RpcError, match="ReprocessSpec must be one of"):
        sh_pipeline(client, "p", pfs("data", "/*"), "true", reprocess_spec="sometimes")


def test_output_repo_name_taken(client: Any) -> None:
    client.create_repo("taken")
    with pytest.raises(grpc.RpcError) as err:
        sh_pipeline(client, "taken", pfs("data", "/*"), "true")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_stop_start_delete(client: Any) -> None:
    sh_pipeline(client, "p", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/")
    last_job(client, "p")
    client.stop_pipeline("p")
    info = inspect(client, "p")
    assert info.stopped and info.state == pps_pb2.PIPELINE_PAUSED and info.version == 1
    put(client, "data", {"/b.txt": "b\n"})
    jobs = list(client.list_job("p"))
    assert state(jobs[0]) == "JOB_CREATED"  # waits while paused
    client.start_pipeline("p")
    info = inspect(client, "p")
    assert not info.stopped and info.state == pps_pb2.PIPELINE_RUNNING and info.version == 1
    assert state(last_job(client, "p")) == "JOB_SUCCESS"
    client.delete_pipeline("p", keep_repo=True)
    assert list(client.list_pipeline()) == []
    assert "p" in [r.repo.name for r in client.list_repo()]
    assert list(client.inspect_branch("p", "master").direct_provenance) == []
    client.delete_pipeline("p")  # missing: succeeds
    client.delete_repo("p")
    sh_pipeline(client, "q", pfs("data", "/*"), "true")
    client.delete_pipeline("q")
    assert "q" not in [r.repo.name for r in client.list_repo()]


def test_delete_all_and_transactions(client: Any) -> None:
    with client.transaction():
        sh_pipeline(client, "up", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/")
        sh_pipeline(client, "down", pfs("up", "/*"), "cp /pfs/up/* /pfs/out/")
    assert sorted(p.pipeline.name for p in client.list_pipeline()) == ["down", "up"]
    up, down = last_job(client, "up"), last_job(client, "down")
    assert up.job.id == down.job.id  # one commit set for the whole transaction
    assert state(down) == "JOB_SUCCESS"
    with client.transaction():  # deletes are transactional too (downstream first)
        client.delete_pipeline("down")
        client.delete_pipeline("up")
    assert list(client.list_pipeline()) == []
    sh_pipeline(client, "up", pfs("data", "/*"), "true")
    client.delete_all_pipelines()
    assert list(client.list_pipeline()) == []
    assert sorted(r.repo.name for r in client.list_repo()) == ["data"]


def test_autoscaling_pipeline_is_in_standby_when_idle(client: Any) -> None:
    sh_pipeline(client, "auto", pfs("data", "/*"), "true", autoscaling=True)
    assert state(last_job(client, "auto")) == "JOB_SUCCESS"
    assert inspect(client, "auto", details=False).state == pps_pb2.PIPELINE_STANDBY


def test_pipelines_in_another_project(client: Any) -> None:
    client.create_project("lab")
    client.create_repo("raw", project_name="lab")
    with client.commit("raw", "master", project_name="lab") as c:
        client.put_file_bytes(c, "/x", b"x\n")
    client.create_pipeline(
        "copy", project_name="lab", input=pfs("raw", "/*"),
        transform=pps_pb2.Transform(cmd=["sh"], stdin=["cp /pfs/raw/* /pfs/out/"]),
    )  # fmt: skip
    info = next(iter(client.inspect_pipeline("copy", project_name="lab", details=True)))
    assert info.pipeline.project.name == "lab" and info.details.input.pfs.project == "lab"
    job = next(iter(client.list_job("copy", project_name="lab")))
    done = next(iter(client.inspect_job(job.job.id, "copy", wait=True, project_name="lab")))
    assert state(done) == "JOB_SUCCESS" and done.data_processed == 1
    lab = sorted(r.repo.name for r in client.list_repo() if r.repo.project.name == "lab")
    assert lab == ["copy", "raw"]


def test_delete_upstream_needs_force(client: Any) -> None:
    sh_pipeline(client, "up", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/")
    sh_pipeline(client, "down", pfs("up", "/*"), "cp /pfs/up/* /pfs/out/")
    with pytest.raises(grpc.RpcError) as err:
        client.delete_pipeline("up")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert sorted(p.pipeline.name for p in client.list_pipeline()) == ["down", "up"]
    client.delete_pipeline("up", force=True)
    assert [p.pipeline.name for p in client.list_pipeline()] == ["down"]
    down = inspect(client, "down", details=False)
    assert down.state == pps_pb2.PIPELINE_FAILURE and "input repo default/up" in down.reason
    assert "up" not in [r.repo.name for r in client.list_repo()]
