"""Cron inputs and RunCron on a real localpachd with the real python-pachyderm client: ticks on
`@every 1s`, RunCron ticks at once, `overwrite` keeps one file, a stopped pipeline does not tick,
a restarted server catches up with one tick, RunCron on a pipeline without cron input fails with
Pachyderm 2.7's text, cron inside cross works as any input. Datums are real processes; waits poll
observable states (commits, jobs, files)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from helpers.wait import wait_for
from lpd_pps_helpers import pfs, put, read_repo, sh_pipeline, state
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.cron import parse_tick

YEARLY = "0 0 1 1 *"  # never ticks during a test: only RunCron does
# Each datum records the tick files it sees.
RECORD = 'ls /pfs/tick > "/pfs/out/$PACH_DATUM_ID"'


def cron(spec: str, **kw: Any) -> pps_pb2.Input:
    return pps_pb2.Input(cron=pps_pb2.CronInput(name="tick", spec=spec, **kw))


def tick_commits(client: Any, repo: str) -> list[Any]:
    """The cron repo's tick commits, oldest first (USER commits: the branch's first, empty
    commit is AUTO)."""
    return sorted(client.list_commit(repo), key=lambda c: c.started.ToNanoseconds())


def head_files(client: Any, repo: str) -> list[str]:
    return sorted(f.file.path for f in client.list_file((repo, "master"), "/"))


def run_cron_in_a_new_second(client: Any, pipeline: str) -> None:
    """RunCron once the clock is past the second of the last tick: tick files are named to the
    second (RFC 3339, as Pachyderm), so two ticks in one second write the same file."""
    last = int(time.time())
    wait_for(lambda: time.time() >= last + 1, "the next second", interval=0.02)
    client.run_cron(pipeline)


def succeeded(client: Any, pipeline: str) -> list[Any]:
    return [j for j in client.list_job(pipeline) if state(j) == "JOB_SUCCESS"]


def test_every_second_ticks_and_each_tick_runs_a_job(pach_client: Any) -> None:
    sh_pipeline(pach_client, "tock", cron("@every 1s"), RECORD)
    assert pach_client.inspect_repo("tock_tick").description == \
        "Cron tick repo for pipeline default/tock."
    wait_for(lambda: len(tick_commits(pach_client, "tock_tick")) >= 2, "two ticks")
    wait_for(lambda: len(succeeded(pach_client, "tock")) >= 3, "a job per tick (+ the first)")
    names = head_files(pach_client, "tock_tick")
    assert len(names) >= 2 and all(parse_tick(n) is not None for n in names)
    # A datum per tick file (glob /*), each seeing its file under /pfs/tick.
    seen = wait_for(lambda: [v.split() for v in read_repo(pach_client, "tock").values()],
                    "outputs")  # fmt: skip
    assert all(len(s) == 1 and "/" + s[0] in names for s in seen)


def test_run_cron_ticks_at_once_and_starts_a_job(pach_client: Any) -> None:
    sh_pipeline(pach_client, "tock", cron(YEARLY), RECORD)
    wait_for(lambda: len(succeeded(pach_client, "tock")) == 1, "the first job")
    assert head_files(pach_client, "tock_tick") == []
    for n in (1, 2):
        run_cron_in_a_new_second(pach_client, "tock")
        assert len(head_files(pach_client, "tock_tick")) == n  # the tick is committed on return
        wait_for(lambda n=n: len(succeeded(pach_client, "tock")) == 1 + n, f"job {1 + n}")
    # The job names the tick commit it read, as Pachyderm's JobInfo does.
    newest = max(succeeded(pach_client, "tock"), key=lambda j: j.started.ToNanoseconds())
    job = pach_client.inspect_job(newest.job.id, "tock", details=True)
    tick = tick_commits(pach_client, "tock_tick")[-1]
    assert next(iter(job)).details.input.cron.commit == tick.commit.id


@pytest.mark.parametrize(("overwrite", "kept"), [(True, 1), (False, 3)])
def test_overwrite_keeps_only_the_newest_tick(pach_client: Any, overwrite: bool, kept: int
                                              ) -> None:  # fmt: skip
    sh_pipeline(pach_client, "tock", cron(YEARLY, overwrite=overwrite), RECORD)
    before: list[str] = []
    for _ in range(3):
        run_cron_in_a_new_second(pach_client, "tock")
        files = head_files(pach_client, "tock_tick")
        assert max(files) >= max(before, default="")
        before = files
    assert len(before) == kept


@pytest.mark.parametrize("inp", [
    pfs("data", "/*"),
    pps_pb2.Input(cross=[pfs("data", "/*"), pfs("more", "/")]),
])  # fmt: skip
def test_run_cron_without_a_cron_input_fails_with_pachyderms_text(pach_client: Any,
                                                                  inp: pps_pb2.Input) -> None:
    pach_client.create_repo("data")
    pach_client.create_repo("more")
    sh_pipeline(pach_client, "plain", inp, "true")
    with pytest.raises(grpc.RpcError) as err:
        pach_client.run_cron("plain")
    assert err.value.details() == "pipeline doesn't have a cron input"
    with pytest.raises(grpc.RpcError) as err:
        pach_client.run_cron("missing")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_cron_crossed_with_pfs_runs_each_tick_with_every_file(pach_client: Any) -> None:
    pach_client.create_repo("data")
    put(pach_client, "data", {"/a": "1", "/b": "2"})
    inp = pps_pb2.Input(cross=[cron(YEARLY, overwrite=True), pfs("data", "/*")])
    sh_pipeline(pach_client, "tock", inp, 'ls /pfs/tick /pfs/data > "/pfs/out/$PACH_DATUM_ID"')
    pach_client.run_cron("tock")
    job = wait_for(lambda: next(iter(succeeded(pach_client, "tock")[:1]), None)
                   if len(succeeded(pach_client, "tock")) >= 2 else None, "the tick's job")
    assert job.data_total == 2  # one tick x two files


def test_stopped_pipeline_does_not_tick(pach_client: Any) -> None:
    sh_pipeline(pach_client, "tock", cron("@every 1s"), "true")
    sh_pipeline(pach_client, "control", cron("@every 1s"), "true")  # the clock we watch
    wait_for(lambda: tick_commits(pach_client, "tock_tick"), "a first tick")
    pach_client.stop_pipeline("tock")
    stopped = time.time()
    seen = len(tick_commits(pach_client, "control_tick"))
    wait_for(lambda: len(tick_commits(pach_client, "control_tick")) >= seen + 3,
             "three ticks of the control pipeline while tock is stopped")
    started = time.time()  # before the call: its catch-up tick may land before it returns
    pach_client.start_pipeline("tock")
    wait_for(lambda: any(c.started.ToNanoseconds() / 1e9 > started
                         for c in tick_commits(pach_client, "tock_tick")), "a tick after start")
    during = [c for c in tick_commits(pach_client, "tock_tick")
              if stopped < c.started.ToNanoseconds() / 1e9 < started]
    assert during == []


def test_restart_catches_up_with_one_tick_not_a_flood(tmp_path: Path) -> None:
    from localpachd.server import start

    data = tmp_path / "pachd"
    server = start(data_dir=data, port=0)
    try:
        client = python_pachyderm.Client(host="127.0.0.1", port=server.port)
        sh_pipeline(client, "tock", cron("@every 1s"), "true")
        wait_for(lambda: tick_commits(client, "tock_tick"), "a first tick")
    finally:
        server.stop()
    down = time.time()
    # The server stays down for several scheduled ticks (a precondition, not a synchronisation).
    wait_for(lambda: time.time() > down + 4, "four missed ticks", interval=0.2)
    server = start(data_dir=data, port=0)
    try:
        up = time.time()
        client = python_pachyderm.Client(host="127.0.0.1", port=server.port)
        wait_for(lambda: any(parse_tick(n).timestamp() >= int(up)  # type: ignore[union-attr]
                             for n in head_files(client, "tock_tick")), "the catch-up tick")
        names = [parse_tick(n) for n in head_files(client, "tock_tick")]
        backfilled = [n for n in names if n is not None and down < n.timestamp() < int(up)]
        assert backfilled == []  # Pachyderm would have written one per missed second
    finally:
        server.stop()
    assert not [t.name for t in threading.enumerate() if t.name == "localpachd-cron"]


def test_a_cron_repo_deleted_by_hand_stops_only_its_pipeline(
    pach_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sh_pipeline(pach_client, "tock", cron("@every 1s"), "true")
    sh_pipeline(pach_client, "control", cron("@every 1s"), "true")
    wait_for(lambda: tick_commits(pach_client, "tock_tick"), "a first tick")
    pach_client.delete_repo("tock_tick", force=True)
    seen = len(tick_commits(pach_client, "control_tick"))
    wait_for(lambda: len(tick_commits(pach_client, "control_tick")) >= seen + 3,
             "three more ticks of the other pipeline")
    cron_records = [r for r in caplog.records if r.name == "localpachd.cron"]
    assert [r for r in cron_records if r.exc_info] == []  # no traceback, and
    assert len([r for r in cron_records if "cannot tick" in r.getMessage()]) <= 1  # said once
