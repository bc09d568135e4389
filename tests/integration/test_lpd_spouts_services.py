"""Spouts and services on a real localpachd with the real python-pachyderm client.

A spout's cmd is one long-lived process (here a python3 script using python_pachyderm's
`Client.new_in_cluster()`, as a spout in Pachyderm 2.7 does) that commits to its output repo and
is started again when it exits; StopPipeline, DeletePipeline and the server's stop end it,
StartPipeline starts it again (services run through jobs: test_lpd_service_jobs.py).
Validation as Pachyderm 2.7 (a spout without a service has no input; a service has an input).
Each process writes its pid to a marker directory; waits poll pids and commits.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from helpers.procs import alive
from helpers.wait import wait_for
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.server import start

SPOUT = """
import os, sys, time
import python_pachyderm
marks = os.environ["MARKS"]
n = len(os.listdir(marks)) + 1
with open(os.path.join(marks, str(os.getpid())), "w") as f:
    f.write(str(n))
client = python_pachyderm.Client.new_in_cluster()
repo = os.environ["PPS_PIPELINE_NAME"]
with client.commit(repo, "master") as c:
    client.put_file_bytes(c, f"/start-{n}", b"spout")
if os.environ.get("STAY") == "1":
    while True:
        time.sleep(1)
"""


def pids(marks: Path) -> list[int]:
    return sorted(int(p.name) for p in marks.iterdir())


def live_pids(marks: Path) -> list[int]:
    return [p for p in pids(marks) if alive(p)]


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path


def spout(client: Any, tmp_path: Path, name: str, stay: bool) -> Path:
    marks = tmp_path / f"marks-{name}"
    marks.mkdir()
    transform = pps_pb2.Transform(
        cmd=[sys.executable, str(script(tmp_path, name, SPOUT))],
        env={"MARKS": str(marks), "STAY": "1" if stay else "0"})
    client.create_pipeline(name, transform=transform, spout=pps_pb2.Spout())
    return marks


def files(client: Any, repo: str) -> list[str]:
    try:
        return sorted(f.file.path for f in client.list_file((repo, "master"), "/"))
    except grpc.RpcError:
        return []


def test_spout_commits_and_is_restarted_after_it_exits(pach_client: Any, tmp_path: Path) -> None:
    marks = spout(pach_client, tmp_path, "exits", stay=False)
    got = wait_for(lambda: len(files(pach_client, "exits")) >= 3 and files(pach_client, "exits"),
                   lambda: f"3 starts, saw {files(pach_client, 'exits')}")
    assert got[:3] == ["/start-1", "/start-2", "/start-3"]
    assert len(pids(marks)) >= 3
    info = next(iter(pach_client.inspect_pipeline("exits", details=True)))
    assert info.type == pps_pb2.PipelineInfo.PIPELINE_TYPE_SPOUT
    assert not list(pach_client.list_job("exits"))  # a spout runs no jobs


def test_stop_start_delete_end_and_restart_the_spout(pach_client: Any, tmp_path: Path) -> None:
    marks = spout(pach_client, tmp_path, "stays", stay=True)
    first = wait_for(lambda: live_pids(marks), "the spout's process")
    wait_for(lambda: files(pach_client, "stays") == ["/start-1"], "the spout's commit")
    pach_client.stop_pipeline("stays")
    wait_for(lambda: not any(alive(p) for p in first), "the stopped spout's process to end")
    commits = len(list(pach_client.list_commit("stays")))
    pach_client.start_pipeline("stays")
    second = wait_for(lambda: live_pids(marks), "the started spout's process")
    assert set(second).isdisjoint(first)
    wait_for(lambda: len(list(pach_client.list_commit("stays"))) > commits, "its new commit")
    pach_client.delete_pipeline("stays")
    wait_for(lambda: not live_pids(marks), "the deleted spout's process to end")


def test_server_stop_leaves_no_process(tmp_path: Path) -> None:
    server = start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0)
    try:
        client = python_pachyderm.Client(host=server.host, port=server.port)
        marks = spout(client, tmp_path, "sp", stay=True)
        wait_for(lambda: len(live_pids(marks)) == 1, "the spout's process")
        running = live_pids(marks)
    finally:
        server.stop()
    assert running and not live_pids(marks)


@pytest.mark.parametrize(("kw", "text"), [
    ({"spout": pps_pb2.Spout(), "input": pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="in", glob="/"))},
     "spout pipelines (without a service) must not have an input"),
    ({"service": pps_pb2.Service(internal_port=80)}, "pipeline must specify an input"),
    ({"service": pps_pb2.Service(internal_port=80, type="Headless"),
      "input": pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="in", glob="/"))},
     "the following service type Headless is not allowed"),
    ({"service": pps_pb2.Service(external_port=80),
      "input": pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="in", glob="/"))},
     "service.internal_port must be set"),
    ({}, "pipeline must specify an input"),
])  # fmt: skip
def test_spout_and_service_specs_are_validated_as_2_7(
    pach_client: Any, kw: dict[str, Any], text: str
) -> None:
    pach_client.create_repo("in")
    with pytest.raises(grpc.RpcError) as err:
        pach_client.create_pipeline("bad", transform=pps_pb2.Transform(cmd=["true"]), **kw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert text in err.value.details()
    assert os.environ.get("PACHD_PEER_SERVICE_HOST") is None  # never leaks into the server
