"""Failures: datum_tries, FAILURE, UNRUNNABLE downstream, recovery; stop, delete, timeouts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from lpd_pps_helpers import counts, last_job, pfs, put, read_repo, sh_pipeline, state, wait_all
from python_pachyderm.proto.v2.pps import pps_pb2

# Fails on any file containing "bad"; counts its attempts in a file outside the datum.
FLAKY = (
    "for f in /pfs/data/*; do",
    '  echo try >> "$TRIES/$(basename $f)"',
    '  if grep -q bad "$f"; then echo "bad input $f" >&2; exit 1; fi',
    '  cp "$f" /pfs/out/',
    "done",
)


@pytest.fixture
def client(pach_client: Any) -> Any:
    pach_client.create_repo("data")
    put(pach_client, "data", {"/a": "good\n", "/b": "good\n"})
    return pach_client


def test_failing_datum_fails_job_after_tries_downstream_unrunnable_then_recovers(
    client: Any, tmp_path: Any
) -> None:
    tries = tmp_path / "tries"
    tries.mkdir()
    env = {"TRIES": str(tries)}
    sh_pipeline(client, "up", pfs("data", "/*"), *FLAKY, datum_tries=2, transform={"env": env})
    sh_pipeline(client, "down", pfs("up", "/"), "cp -r /pfs/up/. /pfs/out/")
    assert state(last_job(client, "down")) == "JOB_SUCCESS"
    commit = put(client, "data", {"/b": "bad\n"})
    up = next(iter(client.inspect_job(commit, "up", wait=True)))
    assert state(up) == "JOB_FAILURE" and counts(up) == (0, 1, 1, 2)
    assert "datum(s) failed" in up.reason
    assert (tries / "b").read_text().count("try") == 1 + 2  # first job once, then 2 tries
    down = next(iter(client.inspect_job(commit, "down", wait=True)))
    assert state(down) == "JOB_UNRUNNABLE"
    only_failed = pps_pb2.ListDatumRequest.Filter(state=[pps_pb2.FAILED])
    failed = list(client.list_datum("up", commit, datum_filter=only_failed))
    assert [d.data[0].file.path for d in failed] == ["/b"]
    assert sorted(d.state for d in client.list_datum("up", commit)) == [
        pps_pb2.FAILED,
        pps_pb2.SKIPPED,
    ]
    logs = [m.message for m in client.get_job_logs("up", commit, datum=failed[0].datum)]
    assert any("bad input" in m for m in logs)
    info = next(iter(client.inspect_pipeline("up")))
    assert info.last_job_state == 4  # JOB_FAILURE
    # the next good commit recovers, from the last good output
    fixed = put(client, "data", {"/b": "good again\n"})
    assert state(next(iter(client.inspect_job(fixed, "up", wait=True)))) == "JOB_SUCCESS"
    assert state(next(iter(client.inspect_job(fixed, "down", wait=True)))) == "JOB_SUCCESS"
    assert read_repo(client, "down") == {"/a": "good\n", "/b": "good again\n"}


def test_accept_return_code(client: Any) -> None:
    sh_pipeline(client, "ok", pfs("data", "/"), "exit 7", transform={"accept_return_code": [7]})
    assert state(last_job(client, "ok")) == "JOB_SUCCESS"


def test_stop_job_kills_it_and_delete_job_removes_it(client: Any) -> None:
    sh_pipeline(client, "slow", pfs("data", "/"), "sleep 60")
    job = next(iter(client.list_job("slow")))
    client.stop_job(job.job.id, "slow")
    done = next(iter(client.inspect_job(job.job.id, "slow", wait=True)))
    assert state(done) == "JOB_KILLED"
    client.delete_job(job.job.id, "slow")
    with pytest.raises(grpc.RpcError) as err:
        next(iter(client.inspect_job(job.job.id, "slow")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_update_kills_unfinished_jobs(client: Any) -> None:
    sh_pipeline(client, "slow", pfs("data", "/"), "sleep 60")
    first = next(iter(client.list_job("slow")))
    sh_pipeline(client, "slow", pfs("data", "/"), "true", update=True)
    jobs = wait_all(client, "slow")
    assert [state(j) for j in jobs] == ["JOB_SUCCESS", "JOB_KILLED"]
    assert jobs[1].job.id == first.job.id
    assert jobs[1].reason == "all jobs killed because pipeline was updated"


def test_datum_and_job_timeouts(client: Any) -> None:
    sh_pipeline(client, "dt", pfs("data", "/*"), "sleep 30", datum_tries=1,
                datum_timeout=duration_pb2.Duration(seconds=1))  # fmt: skip
    job = last_job(client, "dt")
    assert state(job) == "JOB_FAILURE" and job.data_failed == 2
    sh_pipeline(client, "jt", pfs("data", "/"), "sleep 30",
                job_timeout=duration_pb2.Duration(seconds=1))  # fmt: skip
    job = last_job(client, "jt")
    assert state(job) == "JOB_FAILURE" and "timed out" in job.reason


def test_job_sets_span_the_dag(client: Any) -> None:
    sh_pipeline(client, "one", pfs("data", "/*"), "cp /pfs/data/* /pfs/out/")
    sh_pipeline(client, "two", pfs("one", "/*"), "cp /pfs/one/* /pfs/out/")
    last_job(client, "two")
    commit = put(client, "data", {"/c": "good\n"})
    jobs = list(client.inspect_job(commit, wait=True))
    assert sorted(j.job.pipeline.name for j in jobs) == ["one", "two"]
    assert all(state(j) == "JOB_SUCCESS" for j in jobs)
    sets = list(client.list_job())
    assert sets[0].job_set.id == commit and len(sets[0].jobs) == 2
    one_first = list(client.list_job("one"))[-1].job.id  # created before "two" existed
    two_first = list(client.list_job("two"))[-1].job.id  # read one@one_first
    assert one_first != two_first
    by_input = client.list_job("two", input_commit=("one", one_first))
    assert [j.job.id for j in by_input] == [two_first]
    info = next(iter(client.inspect_job(commit, "two", details=True)))
    assert info.details.transform.cmd == ["sh"] and info.output_commit.id == commit
    assert info.details.input.pfs.commit == commit  # the input commit this job read
    d = next(iter(client.list_datum("two", commit)))
    assert client.inspect_datum("two", commit, d.datum.id).datum.id == d.datum.id


def test_err_cmd_recovers_failed_datums(client: Any) -> None:
    put(client, "data", {"/b": "bad\n"})
    sh_pipeline(client, "rec", pfs("data", "/*"),
                'grep -q bad /pfs/data/* && exit 1; cp /pfs/data/* /pfs/out/',
                datum_tries=1, transform={"err_cmd": ["true"]})  # fmt: skip
    job = last_job(client, "rec")
    assert state(job) == "JOB_SUCCESS" and counts(job) == (1, 0, 0, 2)
    assert job.data_recovered == 1
    assert read_repo(client, "rec") == {"/a": "good\n"}


# ---------------------------------------------------------------- err_cmd per attempt (2.7)

USER = Path(__file__).with_name("lpd_batching_user.py").resolve()  # a batching pipeline's code


def _err_cmd_succeeding_on_run(marks: Path, n: int) -> list[str]:
    """Records each run's PACH_DATUM_ID in `marks`; succeeds only on its `n`-th run."""
    return ["sh", "-c", f'echo "$PACH_DATUM_ID" >> {marks}; [ "$(wc -l < {marks})" -eq {n} ]']


def _by_name(client: Any, pipeline: str, job_id: str) -> dict[str, Any]:
    return {os.path.basename(d.data[0].file.path): d for d in client.list_datum(pipeline, job_id)}


@pytest.mark.parametrize("batching", [False, True], ids=["per-datum", "batching"])
def test_err_cmd_after_each_try_recovers_the_datum_alike_per_datum_and_batching(
    client: Any, localpachd: Any, tmp_path: Path, batching: bool
) -> None:
    # Pachyderm 2.7's Datum.run: err_cmd after every failed attempt; one success (here the
    # second of three) makes the datum RECOVERED, counted in data_recovered, the job succeeds.
    marks = tmp_path / "marks"
    put(client, "data", {"/c": "bad\n"})
    err = {"err_cmd": _err_cmd_succeeding_on_run(marks, 2)}
    if batching:
        config = {
            "active_context": "t",
            "contexts": {"t": {"pachd_address": f"{localpachd.host}:{localpachd.port}"}},
        }
        Path(os.environ["PACH_CONFIG"]).write_text(json.dumps({"v2": config}))
        client.create_pipeline(
            "rec",
            input=pfs("data", "/*", name="in"),
            datum_tries=3,
            transform=pps_pb2.Transform(
                cmd=[sys.executable, str(USER), "/pfs/out"],
                datum_batching=True,
                env={"FAIL_ON": "c", "STARTS": str(tmp_path / "starts")},
                **err,
            ),
        )
    else:
        sh_pipeline(client, "rec", pfs("data", "/*"),
                    "grep -q bad /pfs/data/* && exit 1; cp /pfs/data/* /pfs/out/",
                    datum_tries=3, transform=err)  # fmt: skip
    job = last_job(client, "rec")
    assert state(job) == "JOB_SUCCESS", job.reason
    assert counts(job) == (2, 0, 0, 3) and job.data_recovered == 1
    datums = _by_name(client, "rec", job.job.id)
    assert {n: d.state for n, d in datums.items()} == {
        "a": pps_pb2.SUCCESS, "b": pps_pb2.SUCCESS, "c": pps_pb2.RECOVERED}  # fmt: skip
    assert marks.read_text().split() == [datums["c"].datum.id] * 3
    assert sorted(read_repo(client, "rec")) == ["/a", "/b"]  # a recovered datum writes nothing


def test_a_datum_that_succeeds_after_a_recovery_counts_as_processed(
    client: Any, tmp_path: Path
) -> None:
    marks, tries = tmp_path / "marks", tmp_path / "tries"
    err = {"err_cmd": _err_cmd_succeeding_on_run(marks, 1)}
    put(client, "data", {"/c": "flaky\n"})
    sh_pipeline(client, "rec", pfs("data", "/*"),
                f"if grep -q flaky /pfs/data/* && [ ! -e {tries} ]; then",
                f"  touch {tries}; exit 1",
                "fi",
                "cp /pfs/data/* /pfs/out/",
                datum_tries=3, transform=err)  # fmt: skip
    job = last_job(client, "rec")
    assert state(job) == "JOB_SUCCESS" and counts(job) == (3, 0, 0, 3)
    assert job.data_recovered == 0 and len(marks.read_text().split()) == 1
    assert read_repo(client, "rec") == {"/a": "good\n", "/b": "good\n", "/c": "flaky\n"}


def test_err_cmd_cannot_recover_a_datum_that_timed_out(client: Any, tmp_path: Path) -> None:
    # err_cmd runs under the attempt's own datum_timeout context: once it ended, it cannot start.
    marks = tmp_path / "marks"
    put(client, "data", {"/c": "bad\n"})
    sh_pipeline(client, "rec", pfs("data", "/*"),
                "grep -q bad /pfs/data/* && sleep 30; cp /pfs/data/* /pfs/out/",
                datum_tries=2, datum_timeout=duration_pb2.Duration(seconds=1),
                transform={"err_cmd": ["sh", "-c", f"echo run >> {marks}"]})  # fmt: skip
    job = last_job(client, "rec")
    assert state(job) == "JOB_FAILURE" and counts(job) == (2, 0, 1, 3)
    assert job.data_recovered == 0 and not marks.exists()
