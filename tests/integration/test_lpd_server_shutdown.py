"""localpachd's shutdown never races its own threads.

`RunningServer.stop()` refuses new calls, ends the calls in flight, cancels running jobs (their
datum processes are killed), joins every thread localpachd started (job threads, the scheduler,
datum pools, re-kill timers, the event dispatcher, warm-runtime helpers, gRPC handler threads),
and only then closes the store; a store used after close raises `StoreClosed`, never touches a
closed SQLite connection (closing one under a running statement segfaults the process).

Each scenario runs in a SUBPROCESS (this file run as a script), so a segfault is a test failure
showing the return code (-11) instead of a dead pytest worker. No sleep stands in for
synchronisation: the driver stops the server after an observable state (marker files written by
datums, a job state), and stops it at many such states in a loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers.wait import wait_for

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
GRPC_THREADS = ("(_serve)", "(cancel_all_calls_after_grace)")  # grpc names them by target
PHASES = ("commit", "planning", "running", "outputs", "finishing", "idle", "storm")


def _drive(*args: str, timeout: float = 600) -> dict[str, Any]:
    """Run this file as a script with `args`; its last stdout line is a JSON summary."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, str(HERE), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)  # fmt: skip
    out = f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, f"driver exited {proc.returncode} (-11 = segfault)\n{out}"
    lines = proc.stdout.strip().splitlines()
    assert lines, out
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


# ------------------------------------------------------------------ tests


def test_closing_the_store_under_running_statements_never_crashes(tmp_path: Path) -> None:
    """Threads reading in a loop while another closes the store: each gets StoreClosed."""
    summary = _drive("store", str(tmp_path))
    assert summary["readers"] == 4
    assert summary["errors"] == ["StoreClosed"] * 4, summary
    assert summary["after_close"] == ["StoreClosed", "StoreClosed", "StoreClosed"], summary


@pytest.mark.parametrize("runtime,rounds", [("subprocess", 21), ("warm", 7)])
def test_stop_at_every_phase_leaves_no_thread_and_no_datum(
    tmp_path: Path, runtime: str, rounds: int
) -> None:
    summary = _drive("server", str(tmp_path), runtime, str(rounds))
    assert summary["rounds"] == rounds
    assert sorted(set(summary["phases"])) == sorted(PHASES)
    assert summary["leaks"] == [], summary["leaks"]
    assert summary["live_datums"] == [], summary["live_datums"]
    assert summary["store_after_stop"] == ["StoreClosed"] * rounds
    # clients calling while the server stops are refused cleanly: never INTERNAL or UNKNOWN
    # (e.g. "Cannot operate on a closed database"); "stuck" is grpc's client (see the driver)
    ends = summary["storm_ends"]
    # (which of UNAVAILABLE and CANCELLED each call sees depends on where the stop found it: on a
    # loaded machine every call can be in flight, so requiring one UNAVAILABLE was timing luck)
    assert ends and set(ends) <= {"UNAVAILABLE", "CANCELLED", "stuck"}, ends


def test_a_job_cut_by_shutdown_runs_again_after_restart(tmp_path: Path) -> None:
    """A clean stop is not a job failure: the job is left to run again, as after a crash."""
    summary = _drive("restart", str(tmp_path))
    assert summary["state_before_restart"] == "JOB_RUNNING", summary
    assert summary["final"] == "JOB_SUCCESS", summary
    assert summary["restarts"] >= 1, summary


def test_serve_sigterm_during_running_jobs_exits_0_kills_datums_and_keeps_the_job(
    tmp_path: Path,
) -> None:
    summary = _drive("sigterm", str(tmp_path))
    assert summary["code"] == 0, summary
    assert summary["live_datums"] == [], summary
    assert summary["after_restart"] == "JOB_SUCCESS", summary


# ------------------------------------------------------------------ the driver (subprocess)

BLOCK = (  # a marker, then wait for the driver's go (bounded: an orphan ends by itself)
    'touch "$GATE/started.$(basename $in).$$"',
    "n=0",
    'while [ ! -e "$GATE/go" ]; do n=$((n + 1)); [ $n -le 1200 ] || exit 3; sleep 0.05; done',
    "echo done > /pfs/out/$(basename $in)",
)
QUICK = (
    "echo out > /pfs/out/$(basename $in)",
    'touch "$GATE/quick.$(basename $in).$$"',
)
WARM_DATUM = """\
import os, pathlib, sys, time
gate, name = pathlib.Path(os.environ["GATE"]), os.path.basename(os.environ["in"])
if os.environ["MODE"] == "block":
    (gate / f"started.{name}.{os.getpid()}").touch()
    for _ in range(1200):
        if (gate / "go").exists():
            break
        time.sleep(0.05)
    else:
        sys.exit(3)
pathlib.Path(os.environ["OUT"], name).write_text("done")
if os.environ["MODE"] == "quick":
    (gate / f"quick.{name}.{os.getpid()}").touch()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie nobody reaps yet is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _datum_pids(gate: Path) -> list[int]:
    return [int(p.name.rsplit(".", 1)[1]) for p in gate.glob("*.f*.*")]


def _pipeline(client: Any, name: str, stdin: tuple[str, ...], gate: Path,
              runtime: str) -> None:  # fmt: skip
    from python_pachyderm.proto.v2.pps import pps_pb2

    if runtime == "warm":  # a python script, so the warm runtime forks it from a zygote
        script = gate / "datum.py"
        script.write_text(WARM_DATUM)
        mode = "block" if stdin is BLOCK else "quick"
        transform = pps_pb2.Transform(cmd=["python3", str(script)], env={
            "GATE": str(gate), "MODE": mode, "OUT": "/pfs/out"})
    else:
        transform = pps_pb2.Transform(cmd=["sh"], stdin=list(stdin), env={"GATE": str(gate)})
    client.create_pipeline(name, transform=transform, parallelism_spec=pps_pb2.ParallelismSpec(
        constant=2), input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="in", glob="/*")))


@contextmanager
def _storm(address: tuple[str, int]) -> Iterator[list[str]]:
    """Clients in another process (as real clients are) calling read RPCs in a loop, each
    thread on its own connection, until the server refuses them; once the block ends, how
    each call ended: a gRPC status code name, or "stuck"."""
    proc = subprocess.Popen([sys.executable, str(HERE), "storm-client", address[0],
                             str(address[1])], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "calling"  # every client had an answer
    ends: list[str] = []
    try:
        yield ends
    finally:
        try:
            out = proc.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
        ends += json.loads(out.strip().splitlines()[-1]) if out.strip() else ["no report"]


def _main_storm_client(host: str, port: int, n: int = 4) -> None:
    """The client side of `_storm`. A python-pachyderm call in flight when the server goes
    away may wait forever (grpc has no deadline there; seen in-process with today's and
    yesterday's server alike, with no TCP connection left), so threads are daemons and one
    still waiting 60 s after the others is reported "stuck" instead of hanging the test."""
    import grpc
    import python_pachyderm

    answered = threading.Barrier(n + 1)
    ends: list[str] = []

    def hammer(k: int) -> None:
        client = python_pachyderm.Client(host=host, port=port)
        calls = [lambda: list(client.list_job()), lambda: list(client.list_commit("in")),
                 lambda: list(client.glob_file(("in", "master"), "/*")),
                 lambda: client.inspect_repo("in"), lambda: list(client.list_pipeline())]
        calls[k % len(calls)]()
        answered.wait()
        for i in range(k, 10**9):
            try:
                calls[i % len(calls)]()
            except grpc.RpcError as exc:
                ends.append(exc.code().name)
                return
            except ConnectionError:  # python-pachyderm's wrapping of UNAVAILABLE
                ends.append("UNAVAILABLE")
                return

    threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    answered.wait(60)
    print("calling", flush=True)
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    ends += ["stuck"] * sum(t.is_alive() for t in threads)
    print(json.dumps(sorted(ends)), flush=True)
    os._exit(0)  # a stuck grpc call must not hold the interpreter's exit


def _round(base: Path, runtime: str, phase: str) -> dict[str, Any]:
    import python_pachyderm
    from python_pachyderm.proto.v2.pps import pps_pb2

    from localpachd.server import start

    gate = base / "gate"
    gate.mkdir(parents=True)
    before = set(threading.enumerate())
    srv = start(base / "pachd", port=0, runtime=runtime, max_parallelism=2, fsync=False)
    client = python_pachyderm.Client(host=srv.host, port=srv.port)
    client.create_repo("in")
    n = 12 if phase in ("outputs", "finishing", "storm") else 3
    if phase in ("running", "commit", "planning", "storm"):
        _pipeline(client, "block", BLOCK, gate, runtime)
    if phase in ("outputs", "finishing", "idle", "storm", "planning"):
        _pipeline(client, "quick", QUICK, gate, runtime)
    with client.commit("in", "master") as c:
        for i in range(n):
            client.put_file_bytes(c, f"/f{i:02d}", b"x")
    # "commit": stop at once, while the scheduler reacts to the finished input commit
    if phase == "planning":
        wait_for(lambda: list(client.list_job("quick")), "a job row")
    elif phase == "running":
        wait_for(lambda: list(gate.glob("started.*")), "a blocking datum")
    elif phase == "outputs":
        wait_for(lambda: len(list(gate.glob("quick.*"))) >= n // 2, "half the datums")
    elif phase == "finishing":
        wait_for(lambda: len(list(gate.glob("quick.*"))) >= n, "every datum")
    elif phase == "idle":
        wait_for(lambda: [j for j in client.list_job("quick")
                           if j.state == pps_pb2.JobState.JOB_SUCCESS], "the job to succeed")
    ends: list[str] = []
    if phase == "storm":
        wait_for(lambda: list(gate.glob("started.*")), "a blocking datum")
        with _storm((srv.host, srv.port)) as ends:
            srv.stop()
    else:
        srv.stop()
    new = [t for t in threading.enumerate() if t not in before]
    for t in new:  # grpc's own serving and grace threads end by themselves just after stop
        if t.name.endswith(GRPC_THREADS):
            t.join(30)
    leaks = [f"{t.name} (daemon={t.daemon})" for t in new if t.is_alive()]
    after = _after_close(srv.ctx.store)
    live = [pid for pid in _datum_pids(gate) if _alive(pid)]
    (gate / "go").touch()  # lets a datum that survived end (it is reported anyway)
    return {"phase": phase, "leaks": leaks, "live": live, "ends": ends,
            "store": after[0] if len(set(after)) == 1 else " / ".join(after)}


def _main_server(base: Path, runtime: str, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": 0, "phases": [], "leaks": [], "live_datums": [],
                           "store_after_stop": [], "storm_ends": []}
    for i in range(rounds):
        phase = PHASES[i % len(PHASES)]
        r = _round(base / f"round-{i}", runtime, phase)
        out["rounds"] += 1
        out["phases"].append(phase)
        out["leaks"] += [f"{phase}: {leak}" for leak in r["leaks"]]
        out["live_datums"] += [f"{phase}: {pid}" for pid in r["live"]]
        out["store_after_stop"].append(r["store"])
        out["storm_ends"] += r["ends"]
    return out


def _main_store(base: Path) -> dict[str, Any]:
    from localpachd.store import Store, StoreClosed

    store = Store(base / "store", fsync=False)
    barrier = threading.Barrier(5)
    errors: list[str] = []

    def count(tx: Any) -> None:  # a statement of several milliseconds
        tx.q("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
             "SELECT count(*) FROM c")

    def reader() -> None:
        try:
            with store.read() as tx:  # the thread's own connection exists before the close
                count(tx)
            barrier.wait()
            for _ in range(100_000):  # bounded: a store that never refuses fails the test
                with store.read() as tx:
                    count(tx)
            errors.append("never refused")
        except StoreClosed:
            errors.append("StoreClosed")
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    barrier.wait()
    store.close()
    for t in threads:
        t.join(120)
    return {"readers": len(threads), "errors": sorted(errors), "after_close": _after_close(store)}


def _after_close(store: Any) -> list[str]:
    """How reads, writes and waits on a closed store fail."""
    from localpachd.store import StoreClosed

    def read() -> None:
        with store.read() as tx:
            tx.one("SELECT 1")

    def write() -> None:
        with store.write() as tx:
            tx.one("SELECT 1")

    out = []
    for use in (read, write, lambda: store.wait_until(lambda tx: tx.one("SELECT 0"), 5)):
        try:
            use()
            out.append("no error")
        except StoreClosed:
            out.append("StoreClosed")
        except Exception as exc:  # noqa: BLE001 - reported
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _main_restart(base: Path) -> dict[str, Any]:
    """Stop while a datum runs, read the job's state from the data dir, restart, let it end."""
    import python_pachyderm

    from localpachd.pps import db
    from localpachd.server import start
    from localpachd.store import Store

    gate = base / "gate"
    gate.mkdir(parents=True)
    srv = start(base / "pachd", port=0, runtime="subprocess", fsync=False)
    client = python_pachyderm.Client(host=srv.host, port=srv.port)
    client.create_repo("in")
    _pipeline(client, "block", BLOCK, gate, "subprocess")
    with client.commit("in", "master") as c:
        client.put_file_bytes(c, "/f0", b"x")
    wait_for(lambda: list(gate.glob("started.*")), "a blocking datum")
    srv.stop()
    store = Store(base / "pachd", fsync=False)
    with store.read() as tx:
        jobs = db.jobs_of(tx, "default", "block")
    store.close()
    job = next(j for j in jobs if j.state != "JOB_SUCCESS")  # not the empty first commit's
    (gate / "go").touch()
    srv = start(base / "pachd", port=0, runtime="subprocess", fsync=False)
    try:
        client = python_pachyderm.Client(host=srv.host, port=srv.port)
        info = next(iter(client.inspect_job(job.id, "block", wait=True)))
        from python_pachyderm.proto.v2.pps import pps_pb2

        return {"state_before_restart": job.state, "final": pps_pb2.JobState.Name(info.state),
                "restarts": info.restart, "reason": info.reason}
    finally:
        srv.stop()


def _main_sigterm(base: Path) -> dict[str, Any]:
    """`localpachd serve` gets SIGTERM while datums run: it exits 0 and no datum survives."""
    from helpers import pachd

    gate = base / "gate"
    gate.mkdir(parents=True)
    proc, port = pachd.serve(base / "pachd", "--runtime", "subprocess")
    try:
        client = pachd.client(port)
        client.create_repo("in")
        _pipeline(client, "block", BLOCK, gate, "subprocess")
        with client.commit("in", "master") as c:
            for i in range(3):
                client.put_file_bytes(c, f"/f{i}", b"x")
        wait_for(lambda: len(list(gate.glob("started.*"))) >= 2, "two blocking datums")
        job_id = next(j.job.id for j in client.list_job("block") if j.state != 3)  # SUCCESS
        proc.terminate()
        code = proc.wait(120)
    finally:
        pachd.stop(proc)
    live = [pid for pid in _datum_pids(gate) if _alive(pid)]
    (gate / "go").touch()
    proc, port = pachd.serve(base / "pachd", "--runtime", "subprocess")
    try:
        info = next(iter(pachd.client(port).inspect_job(job_id, "block", wait=True)))
    finally:
        pachd.stop(proc)
    from python_pachyderm.proto.v2.pps import pps_pb2

    return {"code": code, "live_datums": live, "after_restart": pps_pb2.JobState.Name(info.state),
            "reason": info.reason}


if __name__ == "__main__":
    mode, where = sys.argv[1], Path(sys.argv[2])
    result: Any = None
    if mode == "store":
        result = _main_store(where)
    elif mode == "server":
        result = _main_server(where, sys.argv[3], int(sys.argv[4]))
    elif mode == "storm-client":
        _main_storm_client(sys.argv[2], int(sys.argv[3]))
    elif mode == "restart":
        result = _main_restart(where)
    elif mode == "sigterm":
        result = _main_sigterm(where)
    else:
        raise SystemExit(f"unknown mode {mode}")
    if result is not None:
        print(json.dumps(result), flush=True)
