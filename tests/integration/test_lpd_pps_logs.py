"""GetLogs: by pipeline, job and datum, with follow, through the real client; and the bounded
reader under it (`localpachd.logs.Tail`: over-long lines cut once, a last line without newline).
The memory bound itself is tested in test_lpd_logs_memory.py."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2
from lpd_pps_helpers import last_job, pfs, put, sh_pipeline, state
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import logs

BEGIN = "beginning to run user code"
FINISHED = "finished running user code after "


def _said(messages: Any) -> list[str]:
    """The user code's lines of a stream (a plain request also gets the worker's per-datum
    lines, master=false user=false, as Pachyderm 2.7 sends them)."""
    return [m.message for m in messages if m.user]


def _master_job_logs(client: Any, pipeline: str, job_id: str, **kw: Any) -> list[str]:
    """A job's master lines (python-pachyderm's get_job_logs has no `master`): the pipeline
    request scoped to the job through a datum reference without an id."""
    datum = pps_pb2.Datum(job=pps_pb2.Job(pipeline=pps_pb2.Pipeline(name=pipeline), id=job_id),
                          id=kw.pop("datum_id", ""))  # fmt: skip
    return [m.message for m in client.get_pipeline_logs(pipeline, master=True, datum=datum, **kw)]


def test_logs_by_pipeline_job_and_datum(pach_client: Any) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1", "/b": "2"})
    sh_pipeline(client, "talk", pfs("data", "/*"),
                'echo "out $(basename $data)"', 'echo "err $(basename $data)" >&2')  # fmt: skip
    job = last_job(client, "talk")
    msgs = [m for m in client.get_pipeline_logs("talk") if m.user]
    assert sorted(m.message for m in msgs) == ["err a", "err b", "out a", "out b"]
    assert all(m.pipeline_name == "talk" and m.job_id == job.job.id and m.user for m in msgs)
    assert {m.data[0].path for m in msgs} == {"/a", "/b"}
    by_job = list(client.get_job_logs("talk", job.job.id))
    assert len(_said(by_job)) == 4 and len(by_job) == 8  # and each datum's begin and finish
    datum = next(d for d in client.list_datum("talk", job.job.id) if d.data[0].file.path == "/a")
    only_a = _said(client.get_job_logs("talk", job.job.id, datum=datum.datum))
    assert sorted(only_a) == ["err a", "out a"]
    filtered = _said(client.get_pipeline_logs("talk", data_filters=["/b"]))
    assert sorted(filtered) == ["err b", "out b"]
    # which datum logs last is not fixed here; test_follow_streams_before_the_datum_ends pins
    # tail's content on a single datum
    assert len(list(client.get_pipeline_logs("talk", tail=1))) == 1


def test_follow_streams_before_the_datum_ends(pach_client: Any, tmp_path: Path) -> None:
    """The datum prints a line, then waits for a flag file the test creates only after the
    followed log stream has delivered that line: the job can only end if logs stream live."""
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    flag = tmp_path / "flag"
    wait = f'i=0; while [ ! -e {flag} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done'
    gate = f"test -e {flag} || exit 3"
    steps = ["echo first", wait, gate, "echo second", "echo last"]
    sh_pipeline(client, "gate", pfs("data", "/"), *steps)
    job = next(iter(client.list_job("gate")))
    lines: queue.Queue[str] = queue.Queue()

    def follow() -> None:
        for m in client.get_job_logs("gate", job.job.id, follow=True):
            if m.user:
                lines.put(m.message)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert lines.get(timeout=60) == "first"
    assert state(next(iter(client.inspect_job(job.job.id, "gate")))) == "JOB_RUNNING"
    flag.touch()
    t.join(timeout=60)
    assert not t.is_alive(), "follow did not end with the job"
    assert [lines.get_nowait() for _ in range(lines.qsize())] == ["second", "last"]
    assert state(last_job(client, "gate")) == "JOB_SUCCESS"
    assert [m.message for m in client.get_job_logs("gate", job.job.id, tail=1)] == ["last"]
    assert [m.message for m in client.get_pipeline_logs("gate", tail=2)] == ["second", "last"]


def test_follow_streams_until_the_job_ends(pach_client: Any) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    sh_pipeline(client, "slow", pfs("data", "/"), "echo first", "sleep 1", "echo second")
    job = next(iter(client.list_job("slow")))
    got: list[str] = []

    def follow() -> None:
        for m in client.get_job_logs("slow", job.job.id, follow=True):
            if m.user:
                got.append(m.message)

    t = threading.Thread(target=follow)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    assert got == ["first", "second"]


def test_a_last_line_without_newline_is_returned_once_the_job_ends(pach_client: Any) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    sh_pipeline(client, "bare", pfs("data", "/"), "echo first", "printf 'no newline'")
    job = last_job(client, "bare")
    assert _said(client.get_job_logs("bare", job.job.id)) == ["first", "no newline"]
    followed = _said(client.get_job_logs("bare", job.job.id, follow=True))
    assert followed == ["first", "no newline"]


def _tail(tmp_path: Path) -> tuple[Path, logs.Tail]:
    path = tmp_path / "d.log"
    path.write_bytes(b"")
    return path, logs.Tail(path, "default", "p", "j")


def test_tail_cuts_over_long_lines_complete_or_still_being_written(tmp_path: Path) -> None:
    """A line longer than MAX_LINE is sent once, cut, with a marker; a line still being written
    is cut as soon as it is too long and its rest is consumed without being sent again."""
    path, tail = _tail(tmp_path)
    big = logs.MAX_LINE + 10
    with open(path, "ab") as f:
        f.write(b"a\n" + b"B" * big + b"\nc\n" + b"D" * (logs.MAX_LINE + 1))
    got = [line.message for line in tail.read()]
    assert [g[:1] for g in got] == ["a", "B", "c", "D"]
    assert got[1] == "B" * logs.MAX_LINE + (
        f" [localpachd: line truncated: {big} bytes, the first {logs.MAX_LINE} kept]")
    assert got[3].endswith(f"{logs.MAX_LINE + 1} bytes so far, the first {logs.MAX_LINE} kept]")
    with open(path, "ab") as f:
        f.write(b"D" * 5000)  # more of the line already sent: nothing new to send
    assert list(tail.read()) == []
    with open(path, "ab") as f:
        f.write(b"DDD\ne\nhalf")
    assert [line.message for line in tail.read()] == ["e"]
    assert [line.message for line in tail.read(final=True)] == ["half"]


def test_tail_count_matches_what_read_yields(tmp_path: Path) -> None:
    path, tail = _tail(tmp_path)
    path.write_bytes(b"x\n" * 3 + b"Y" * (logs.MAX_LINE * 2) + b"\n" + b"z")
    for final in (False, True):
        end = tail.size()
        n = tail.count(final, end)
        assert n == len(list(logs.Tail(path, "default", "p", "j").read(final, end))) == 4 + final


# ------------------------------------------------------------ issue 16, item 4


def test_job_lines_are_master_and_datum_lines_are_worker_lines(pach_client: Any) -> None:
    """As Pachyderm 2.7 logs them: the job's lines (started, finished) are master=true; each
    datum's "beginning to run user code" and "finished running user code after ..." are
    master=false user=false, so a plain request (python-pachyderm's default) gets them with
    the user's lines; `master` is a filter (2.7's FilterLogLines: master must equal)."""
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1", "/b": "2"})
    sh_pipeline(client, "talk", pfs("data", "/*"), 'echo "out $(basename $data)"')
    job = last_job(client, "talk")
    master = list(client.get_pipeline_logs("talk", master=True))
    assert master and all(m.master and not m.user and m.job_id == job.job.id for m in master)
    texts = [m.message for m in master]
    assert texts[0].startswith("started job") and texts[-1] == "job successful, closing commits"
    assert not any(t == BEGIN or t.startswith(FINISHED) for t in texts)
    assert all(not m.datum_id and m.ts.seconds > 0 for m in master)
    assert _master_job_logs(client, "talk", job.job.id) == texts
    plain = list(client.get_pipeline_logs("talk"))
    assert not any(m.master for m in plain)
    worker = [m for m in plain if not m.user]
    begun = [m for m in worker if m.message == BEGIN]
    done = [m for m in worker if m.message.startswith(FINISHED)]
    assert len(begun) == len(done) == 2 and len(worker) == 4
    assert {m.data[0].path for m in done} == {"/a", "/b"} and all(m.datum_id for m in worker)
    assert all(m.ts.seconds > 0 and m.job_id == job.job.id for m in worker)
    assert sorted(_said(plain)) == ["out a", "out b"]
    by_job = list(client.get_job_logs("talk", job.job.id))
    assert sorted(m.message for m in by_job) == sorted(m.message for m in plain)


def test_datum_worker_lines_follow_the_datum_and_data_filters(pach_client: Any) -> None:
    """A request for one datum, or with data filters, gets that datum's worker lines and no
    other datum's; with master=true it gets none (the job's lines belong to no datum)."""
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1", "/b": "2", "/c": "3"})
    sh_pipeline(client, "talk", pfs("data", "/*"), 'echo "out $(basename $data)"')
    job = last_job(client, "talk")
    for d in client.list_datum("talk", job.job.id):
        path = d.data[0].file.path
        name = path.strip("/")
        one = list(client.get_job_logs("talk", job.job.id, datum=d.datum))
        assert sorted(m.message[:len(FINISHED)] for m in one) == sorted(
            [BEGIN, FINISHED, f"out {name}"])
        assert {m.datum_id for m in one} == {d.datum.id}
        filtered = list(client.get_pipeline_logs("talk", data_filters=[path]))
        assert sorted(m.message for m in filtered) == sorted(m.message for m in one)
        assert _master_job_logs(client, "talk", job.job.id, datum_id=d.datum.id) == []


def test_tail_counts_the_worker_lines_a_request_gets(pach_client: Any) -> None:
    """`tail` counts what the request gets: worker lines included for a plain request, only the
    job's lines for master=true."""
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    sh_pipeline(client, "one", pfs("data", "/"), "echo hi")
    job = last_job(client, "one")
    plain = [m.message for m in client.get_job_logs("one", job.job.id)]
    master = _master_job_logs(client, "one", job.job.id)
    assert len(plain) == 3 and len(master) == 2
    for n in range(1, 5):
        got = [m.message for m in client.get_job_logs("one", job.job.id, tail=n)]
        assert got == plain[-n:]
        assert _master_job_logs(client, "one", job.job.id, tail=n) == master[-n:]


def test_a_failed_job_says_why_in_its_master_lines(pach_client: Any) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    sh_pipeline(client, "bad", pfs("data", "/"), "exit 3")
    last_job(client, "bad")
    texts = [m.message for m in client.get_pipeline_logs("bad", master=True)]
    assert texts[-1].startswith("failing job with reason: 1 datum(s) failed")


def test_follow_waits_for_lines_and_ends_when_the_pipeline_is_deleted(pach_client: Any) -> None:
    """No input yet: the followed stream waits; a commit's lines arrive; deleting the pipeline
    ends the stream (no error, no hang)."""
    client = pach_client
    client.create_repo("data")
    sh_pipeline(client, "later", pfs("data", "/"), "echo hello")
    lines: queue.Queue[str] = queue.Queue()
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            for m in client.get_pipeline_logs("later", follow=True):
                if m.user:
                    lines.put(m.message)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    put(client, "data", {"/a": "1"})
    assert lines.get(timeout=60) == "hello"
    client.delete_pipeline("later")
    t.join(timeout=60)
    assert not t.is_alive(), "follow did not end when the pipeline was deleted"
    assert errors == []


def test_since_leaves_out_older_lines(pach_client: Any, localpachd: Any) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    sh_pipeline(client, "old", pfs("data", "/"), "echo hi")
    job = last_job(client, "old")
    hour_ago = time.time() - 3600
    for path in logs.job_files(localpachd.ctx.store.data_dir, "default", "old", job.job.id):
        os.utime(path, (hour_ago, hour_ago))
    recent = duration_pb2.Duration(seconds=600)
    assert _said(client.get_pipeline_logs("old", since=recent)) == []
    day = duration_pb2.Duration(seconds=86400)
    assert _said(client.get_pipeline_logs("old", since=day)) == ["hi"]
    assert [m.message for m in client.get_pipeline_logs("old", master=True, since=recent)] != []
