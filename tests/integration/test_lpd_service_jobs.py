"""Service pipelines run through jobs, as Pachyderm 2.7's service worker runs them.

2.7 (src/server/worker/pipeline/service/service.go, Run and forEachJob): each job of a service
pipeline runs its cmd with the job's single datum laid out at /pfs; a new job (a new input
commit) stops the service of the previous one, whose job then succeeds with its output commit
finished, and starts a new one on the new data; more than one datum fails ("services must have a
single datum"); a failing service is retried as a datum is (3 retries), then left until the next
job. The output branch has the input as provenance. Real localpachd, real python-pachyderm, real
processes: each service process writes what it saw to `<marks>/<pid>.json`; waits poll those
files, pids and job states.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.procs import alive
from helpers.wait import wait_for
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import runtime_pfsmount

SERVICE = """
import json, os, sys, time
seen = {"job": os.environ.get("PACH_JOB_ID"), "datum": os.environ.get("PACH_DATUM_ID"),
        "data": open(os.path.join(os.environ["in"], "data")).read(),
        "cwd": os.getcwd(), "token": os.environ.get("PACH_TOKEN"),
        "peer": os.environ.get("PACHD_PEER_SERVICE_PORT")}
try:
    seen["pfs"] = open("/pfs/in/data").read()  # a hard-coded /pfs: namespace mode only
except OSError:
    seen["pfs"] = None
seen["out"] = os.path.isdir(os.path.join(os.environ["in"], "..", "out"))
with open(os.path.join(os.environ["MARKS"], f"{os.getpid()}.json"), "w") as f:
    json.dump(seen, f)
if os.environ.get("EXIT"):
    sys.exit(int(os.environ["EXIT"]))
while True:
    time.sleep(1)
"""


def marks(d: Path) -> dict[int, dict[str, Any]]:
    """pid -> what that service process saw (files still being written are skipped)."""
    out = {}
    for p in d.glob("*.json"):
        try:
            out[int(p.stem)] = json.loads(p.read_text())
        except ValueError:
            continue
    return out


def live(d: Path) -> dict[int, dict[str, Any]]:
    return {pid: m for pid, m in marks(d).items() if alive(pid)}


def put(client: Any, repo: str, files: dict[str, bytes]) -> str:
    with client.commit(repo, "master") as c:
        for path, data in files.items():
            client.put_file_bytes(c, path, data)
    return str(c.id)


def service(client: Any, tmp_path: Path, name: str = "svc", glob: str = "/",
            env: dict[str, str] | None = None, update: bool = False) -> Path:  # fmt: skip
    d = tmp_path / f"marks-{name}"
    d.mkdir(exist_ok=True)
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    transform = pps_pb2.Transform(cmd=[sys.executable, str(script)],
                                  env={"MARKS": str(d), **(env or {})})  # fmt: skip
    client.create_pipeline(
        name, transform=transform, update=update,
        input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="in", glob=glob)),
        service=pps_pb2.Service(internal_port=8888, external_port=30888, type="NodePort"))
    return d


def jobs(client: Any, name: str = "svc") -> dict[str, Any]:
    return {j.job.id: j for j in client.list_job(name)}


def only_job(client: Any, name: str = "svc") -> str:
    """The id of the pipeline's one job (made when the pipeline was: its own commit set)."""
    (job_id,) = wait_for(lambda: list(jobs(client, name)), "the pipeline's first job")
    return str(job_id)


def state(client: Any, job_id: str, name: str = "svc") -> int:
    return int(next(iter(client.inspect_job(job_id, pipeline_name=name))).state)


def test_a_service_runs_its_job_with_the_datum_at_pfs(pach_client: Any, tmp_path: Path) -> None:
    pach_client.create_repo("in")
    put(pach_client, "in", {"/data": b"v1"})
    d = service(pach_client, tmp_path)
    (pid, seen), = wait_for(lambda: live(d), "the service's process").items()
    assert seen["data"] == "v1" and seen["out"]
    if runtime_pfsmount.mode() == runtime_pfsmount.NAMESPACE:
        assert seen["pfs"] == "v1"  # a real /pfs, as in a worker container
    (job_id, job), = jobs(pach_client).items()
    assert seen["job"] == job_id
    assert seen["datum"] and job.state == pps_pb2.JobState.JOB_RUNNING
    assert not pach_client.inspect_commit(("svc", "master")).__next__().finished.seconds
    branch = pach_client.inspect_branch("svc", "master")
    assert [(b.repo.name, b.name) for b in branch.direct_provenance] == [("in", "master")]
    info = next(iter(pach_client.inspect_pipeline("svc", details=True)))
    assert (info.details.service.internal_port, info.details.service.external_port) == (
        8888, 30888)  # fmt: skip


def test_a_new_input_commit_replaces_the_service(pach_client: Any, tmp_path: Path) -> None:
    pach_client.create_repo("in")
    put(pach_client, "in", {"/data": b"v1"})
    d = service(pach_client, tmp_path)
    (first, seen1), = wait_for(lambda: live(d), "the first service").items()
    for n in (2, 3):  # each new commit: the old process ends, a new one sees the new data
        new = put(pach_client, "in", {"/data": f"v{n}".encode()})
        got = wait_for(lambda: [p for p, m in live(d).items() if m["data"] == f"v{n}"],  # noqa: B023
                       f"the service on v{n}")  # fmt: skip
        assert len(got) == 1 and marks(d)[got[0]]["job"] == new
        wait_for(lambda: len(live(d)) == 1, "the older service to end")
    assert not alive(first)
    all_jobs = jobs(pach_client)
    assert len(all_jobs) == 3
    older = [j for i, j in all_jobs.items() if i != new]
    assert all(j.state == pps_pb2.JobState.JOB_SUCCESS for j in older)
    for j in older:  # their output commits are finished, without error
        c = next(iter(pach_client.inspect_commit(("svc", j.job.id))))
        assert c.finished.seconds and not c.error
    assert all_jobs[new].state == pps_pb2.JobState.JOB_RUNNING
    assert seen1["job"] != new


def test_a_job_waits_for_its_input_commit(pach_client: Any, tmp_path: Path) -> None:
    """While a new input commit is open, the service of the job before it keeps running; the
    new job starts (and replaces it) once the commit is finished."""
    pach_client.create_repo("in")
    put(pach_client, "in", {"/data": b"v1"})
    d = service(pach_client, tmp_path)
    (first,) = wait_for(lambda: live(d), "the first service")
    commit = pach_client.start_commit("in", "master")
    pach_client.put_file_bytes(commit, "/data", b"v2")
    new = wait_for(lambda: [i for i in jobs(pach_client) if i == commit.id], "the new job")[0]
    assert state(pach_client, new) == pps_pb2.JobState.JOB_CREATED
    assert list(live(d)) == [first] and len(marks(d)) == 1
    pach_client.finish_commit(commit)
    wait_for(lambda: [m for m in live(d).values() if m["job"] == new], "the new job's service")
    wait_for(lambda: not alive(first), "the old service to end")


def test_a_first_job_waits_for_its_open_input(pach_client: Any, tmp_path: Path) -> None:
    """A pipeline made while its input commit is open: no service until the commit finishes.
    (A second service, on finished data, is the witness that the supervisor has passed.)"""
    pach_client.create_repo("in")
    commit = pach_client.start_commit("in", "master")
    pach_client.put_file_bytes(commit, "/data", b"v1")
    d = service(pach_client, tmp_path)
    job_id = only_job(pach_client)
    pach_client.create_repo("other")
    put(pach_client, "other", {"/data": b"w"})
    script = tmp_path / "witness.py"
    script.write_text(SERVICE.replace('environ["in"]', 'environ["other"]'))
    witness = tmp_path / "marks-witness"
    witness.mkdir()
    pach_client.create_pipeline(
        "witness", transform=pps_pb2.Transform(cmd=[sys.executable, str(script)],
                                               env={"MARKS": str(witness)}),
        input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="other", glob="/")),
        service=pps_pb2.Service(internal_port=8889))  # fmt: skip
    wait_for(lambda: live(witness), "the witness service")
    assert not marks(d) and state(pach_client, job_id) == pps_pb2.JobState.JOB_CREATED
    pach_client.finish_commit(commit)
    wait_for(lambda: [m for m in live(d).values() if m["job"] == job_id], "the service")


def test_a_service_of_several_datums_fails_its_job(pach_client: Any, tmp_path: Path) -> None:
    pach_client.create_repo("in")
    put(pach_client, "in", {"/a": b"1", "/b": b"2"})
    d = service(pach_client, tmp_path, glob="/*")
    job_id = only_job(pach_client)
    wait_for(lambda: state(pach_client, job_id) == pps_pb2.JobState.JOB_FAILURE, "job failure")
    assert next(iter(pach_client.inspect_job(job_id, pipeline_name="svc"))).reason == (
        "services must have a single datum")
    assert not marks(d)


def test_a_failing_service_is_retried_as_a_datum_then_left(
    pach_client: Any, tmp_path: Path
) -> None:
    pach_client.create_repo("in")
    put(pach_client, "in", {"/data": b"v1"})
    d = service(pach_client, tmp_path, env={"EXIT": "3"})
    job_id = only_job(pach_client)

    def errored() -> int:
        lines = [m.message for m in pach_client.get_job_logs("svc", job_id)]
        return sum("errored running user code" in line for line in lines)

    wait_for(lambda: errored() >= 4, lambda: f"4 failed attempts, saw {errored()}")
    assert len(marks(d)) == 4  # 2.7: the first try and datum.defaultNumRetries (3)
    assert state(pach_client, job_id) == pps_pb2.JobState.JOB_RUNNING  # until the next job
    put(pach_client, "in", {"/data": b"v2"})  # a new job runs the service again
    wait_for(lambda: len(marks(d)) > 4, "the next job's service")


def test_stop_start_update_delete(pach_client: Any, tmp_path: Path) -> None:
    pach_client.create_repo("in")
    put(pach_client, "in", {"/data": b"v1"})
    d = service(pach_client, tmp_path)
    job_id = only_job(pach_client)
    first = set(wait_for(lambda: live(d), "the service"))
    pach_client.stop_pipeline("svc")
    wait_for(lambda: not live(d), "the stopped service to end")
    assert state(pach_client, job_id) == pps_pb2.JobState.JOB_RUNNING
    pach_client.start_pipeline("svc")
    second = set(wait_for(lambda: live(d), "the started service"))
    assert second.isdisjoint(first) and {m["job"] for m in live(d).values()} == {job_id}
    service(pach_client, tmp_path, env={"NEW": "1"}, update=True)
    wait_for(lambda: state(pach_client, job_id) == pps_pb2.JobState.JOB_KILLED, "killed job")
    third = wait_for(lambda: {p: m for p, m in live(d).items() if m["job"] != job_id},
                     "the updated service")  # fmt: skip
    assert set(third).isdisjoint(second)
    pach_client.delete_pipeline("svc")
    wait_for(lambda: not live(d), "the deleted service to end")


@pytest.mark.parametrize("token", [None, "svc-token-1234"])
def test_a_service_gets_the_server_address_and_token(tmp_path: Path, token: str | None) -> None:
    import python_pachyderm

    from localpachd.server import start

    server = start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0, auth_token=token)
    try:
        client = python_pachyderm.Client(host=server.host, port=server.port, auth_token=token)
        client.create_repo("in")
        put(client, "in", {"/data": b"v1"})
        d = service(client, tmp_path)
        (pid, seen), = wait_for(lambda: live(d), "the service").items()
        assert seen["peer"] == str(server.port)
        assert seen["token"] == token  # 2.7: PACH_TOKEN, the job's token, only with auth
    finally:
        server.stop()
    assert not alive(pid)


def test_a_server_restart_runs_the_service_of_its_running_job(tmp_path: Path) -> None:
    import python_pachyderm

    from localpachd.server import start

    servers = [start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0)]
    try:
        client = python_pachyderm.Client(host=servers[0].host, port=servers[0].port)
        client.create_repo("in")
        put(client, "in", {"/data": b"v1"})
        d = service(client, tmp_path)
        job_id = only_job(client)
        first = set(wait_for(lambda: live(d), "the service"))
        servers[0].stop()
        assert not live(d)  # the server's stop ended it
        servers.append(start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0))
        client = python_pachyderm.Client(host=servers[1].host, port=servers[1].port)
        again = wait_for(lambda: live(d), "the service after the restart")
        assert set(again).isdisjoint(first)
        assert {m["job"] for m in again.values()} == {job_id}
        assert state(client, job_id) == pps_pb2.JobState.JOB_RUNNING
    finally:
        for s in servers:
            s.stop()
