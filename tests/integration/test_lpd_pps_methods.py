"""The PPS methods served as Pachyderm 2.7 serves them (its pps api_server.go): DeletePipelines,
SubscribeJob, RunPipeline (2.7 itself answers "unimplemented"), ListTask (no task service: empty),
and every method still unserved answered UNIMPLEMENTED with its name, without a traceback in the
server's log. python-pachyderm 7.6 has no client method for these, so its generated pps stub is
used on a channel of its own."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from lpd_pps_helpers import pfs, put, sh_pipeline, wait_all
from python_pachyderm.proto.v2.pfs import pfs_pb2
from python_pachyderm.proto.v2.pps import pps_pb2
from python_pachyderm.proto.v2.pps import pps_pb2_grpc as grpc_pb
from python_pachyderm.proto.v2.task import task_pb2

from localpachd.pps.servicer import PPSServicer
from localpachd.server import RunningServer


@pytest.fixture
def stub(localpachd: RunningServer) -> Iterator[Any]:
    with grpc.insecure_channel(f"{localpachd.host}:{localpachd.port}") as channel:
        yield grpc_pb.APIStub(channel)


def _pipeline(name: str, project: str = "default") -> pps_pb2.Pipeline:
    p = pps_pb2.Pipeline(name=name)
    p.project.name = project
    return p


def _names(pipelines: Any) -> list[tuple[str, str]]:
    return sorted((p.project.name, p.name) for p in pipelines)


def _two_chains(client: Any) -> None:
    """default: data -> a -> b; other: data2 -> c."""
    client.create_repo("data")
    sh_pipeline(client, "a", pfs("data", "/"), "true")
    sh_pipeline(client, "b", pfs("a", "/"), "true")
    client.create_project("other")
    client.create_repo("data2", project_name="other")
    client.create_pipeline("c", transform=pps_pb2.Transform(cmd=["true"]), project_name="other",
                           input=pps_pb2.Input(pfs=pps_pb2.PFSInput(
                               project="other", repo="data2", glob="/")))  # fmt: skip


def test_delete_pipelines_of_a_project_deletes_those_only(pach_client: Any, stub: Any) -> None:
    _two_chains(pach_client)
    req = pps_pb2.DeletePipelinesRequest(projects=[pfs_pb2.Project(name="default")])
    got = stub.DeletePipelines(req)
    assert _names(got.pipelines) == [("default", "a"), ("default", "b")]
    assert _names(i.pipeline for i in pach_client.list_pipeline()) == [("other", "c")]
    repos = {(r.repo.project.name, r.repo.name) for r in pach_client.list_repo()}
    assert repos == {("default", "data"), ("other", "data2"), ("other", "c")}


def test_delete_pipelines_all_and_keep_repo(pach_client: Any, stub: Any) -> None:
    _two_chains(pach_client)
    got = stub.DeletePipelines(pps_pb2.DeletePipelinesRequest(all=True, keep_repo=True))
    assert _names(got.pipelines) == [("default", "a"), ("default", "b"), ("other", "c")]
    assert list(pach_client.list_pipeline()) == []
    repos = {r.repo.name for r in pach_client.list_repo()}
    assert repos == {"data", "data2", "a", "b", "c"}
    assert list(stub.DeletePipelines(pps_pb2.DeletePipelinesRequest()).pipelines) == []


def test_run_pipeline_answers_as_27_does(pach_client: Any, stub: Any) -> None:
    pach_client.create_repo("data")
    sh_pipeline(pach_client, "a", pfs("data", "/"), "true")
    with pytest.raises(grpc.RpcError) as err:
        stub.RunPipeline(pps_pb2.RunPipelineRequest(pipeline=_pipeline("a")))
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNKNOWN, "unimplemented")


def test_list_task_is_empty(stub: Any) -> None:
    assert list(stub.ListTask(task_pb2.ListTaskRequest(group=task_pb2.Group(namespace="x")))) == []


def test_subscribe_job_needs_a_pipeline(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.SubscribeJob(pps_pb2.SubscribeJobRequest()))
    assert err.value.details() == "pipeline must be specified"


def test_subscribe_job_streams_each_unfinished_job_once(
    pach_client: Any, stub: Any, tmp_path: Path
) -> None:
    """A running job is sent at once; each new commit's job as it appears; none twice."""
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    flag = tmp_path / "go"
    wait = f"i=0; while [ ! -e {flag} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
    sh_pipeline(client, "p", pfs("data", "/*"), wait)
    first = next(iter(client.list_job("p")))
    got: queue.Queue[Any] = queue.Queue()
    call = stub.SubscribeJob(pps_pb2.SubscribeJobRequest(pipeline=_pipeline("p"), details=True))

    def read() -> None:
        try:
            for info in call:
                got.put(info)
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        one = got.get(timeout=60)
        assert one.job.id == first.job.id and one.details.transform.cmd == ["sh"]
        put(client, "data", {"/b": "2"})
        two = got.get(timeout=60)
        assert two.job.id != first.job.id and two.job.pipeline.name == "p"
        flag.touch()
        jobs = wait_all(client, "p")
        assert {j.job.id for j in jobs} == {first.job.id, two.job.id}
        assert got.empty()
    finally:
        call.cancel()
        reader.join(60)
    assert not reader.is_alive()


def _unserved() -> list[str]:
    return sorted(n for n in grpc_pb.APIServicer.__dict__ if not n.startswith("_")
                  and getattr(PPSServicer, n).__name__ == "missing")  # fmt: skip


def test_every_unserved_method_is_unimplemented_by_name_without_a_traceback(
    stub: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    unserved = _unserved()
    assert {"ActivateAuth", "RunLoadTest", "QueryLoki"} <= set(unserved)
    for name in unserved:
        method = getattr(stub, name)
        with pytest.raises(grpc.RpcError) as err:
            answer = method(pps_pb2.ActivateAuthRequest())  # every field empty: any request
            if isinstance(method, grpc.UnaryStreamMultiCallable):
                list(answer)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, name
        assert err.value.details() == f"/pps_v2.API/{name} is not implemented by localpachd"
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
            ] == []  # fmt: skip
