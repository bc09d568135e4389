"""Namespace datums started by one launcher process (issue 16, item 8: a real /pfs without a
Python interpreter per datum), with the subprocess runtime's semantics and isolation.

Real processes throughout: the runtime alone (a launcher, `sh` datums, /proc read for process
trees), then a real localpachd whose launcher is killed mid-job and which is stopped with a datum
running. Faults are injected only through our own parameter (the launcher's interpreter).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.pachd import client, serve
from helpers.pfs import put, read_repo
from helpers.wait import wait_for
from lpd_pps_helpers import last_job, pfs, sh_pipeline
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import runtime_pfsmount as pfsmount
from localpachd.runtime import DatumOutcome, DatumRun
from localpachd.runtime_nsclient import MAX_FAILURES, NamespaceLauncher
from localpachd.runtime_subprocess import SubprocessRuntime

NS, RW = pfsmount.NAMESPACE, pfsmount.REWRITE
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "X": "a b", "PACH_JOB_ID": "j", "PACH_DATUM_ID": "d"}


@pytest.fixture(autouse=True)
def namespace_mode() -> None:
    if pfsmount.mode() != NS:
        pytest.skip("this kernel refuses private mount namespaces here: rewrite mode only")


def _slot(parent: Path, name: str, content: str = "x") -> Path:
    slot = parent / name
    (slot / "pfs" / "in").mkdir(parents=True)
    (slot / "pfs" / "out").mkdir()
    (slot / "pfs" / "in" / name).write_text(content)
    return slot


def _run(slot: Path, *argv: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
         timeout: float | None = None) -> DatumRun:  # fmt: skip
    log = slot / "log"
    binds = ((str(slot / "pfs"), "/pfs"),)
    return DatumRun(argv=argv, env=dict(env or ENV), cwd=slot, stdin=stdin, stdout_path=log,
                    stderr_path=log, timeout=timeout, binds=binds)  # fmt: skip


def _runtime(mode: str = NS, **launcher: Any) -> SubprocessRuntime:
    return SubprocessRuntime(pfs_mode=lambda: mode, launcher=NamespaceLauncher(**launcher))


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _processes(needle: str) -> list[int]:
    """Live processes whose command line contains `needle`."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [p for p in pids if needle in _cmdline(p) and _alive(p)]


def _launchers() -> list[int]:
    """The launcher processes this test process started."""
    return [p for p in _processes("runtime_nslaunch") if _stat(p)[1:2] == [str(os.getpid())]]


def test_fifty_datums_start_one_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:  # fmt: skip
    """Every Python interpreter the runtime starts goes through sys.executable: a wrapper there
    counts them. 50 datums, each reading /pfs for real: one interpreter (the launcher), and
    every datum's parent is that one process."""
    count, wrapper = tmp_path / "interpreters", tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$$" >> {count}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(wrapper))
    slot, runtime = _slot(tmp_path, "slot"), _runtime()
    try:
        for _ in range(50):
            script = "cat /pfs/in/slot >> /pfs/out/seen; echo $PPID >> /pfs/out/parents"
            assert runtime.run(_run(slot, "sh", "-c", script)) == DatumOutcome(0)
    finally:
        runtime.close()
    assert (slot / "pfs" / "out" / "seen").read_text() == "x" * 50
    assert len(count.read_text().split()) == 1, "one interpreter for all 50 datums"
    parents = set((slot / "pfs" / "out" / "parents").read_text().split())
    assert len(parents) == 1 and parents != {str(os.getpid())}
    assert runtime.launcher.stats == {"launchers": 1, "datums": 50}


# What a datum's process is: its stdin, exact environment, signal dispositions and mask, open
# descriptors, umask, working directory, own session and process group, and its exit status.
# (The shell reads its own signal lines itself: a child reading them could catch the shell
# inside fork(), where glibc blocks every signal for a moment.)
PROBE = ('cat; echo; tr "\\0" "\\n" < /proc/$$/environ | sort; while read -r k v; do '
         'case $k in SigBlk:|SigIgn:) echo "$k $v";; esac; done < /proc/$$/status; '
         'ls /proc/$$/fd; umask; pwd; set -- $(cut -d" " -f5,6 /proc/$$/stat); '
         '[ "$1" = $$ ] && [ "$2" = $$ ] && echo own session')  # fmt: skip
VARIANTS: dict[str, tuple[tuple[str, ...], bytes | None]] = {
    "exit 0 with stdin": (("sh", "-c", PROBE), b"in\n" * 50000),
    "exit 7": (("sh", "-c", PROBE + "; exit 7"), None),
    "killed by a signal": (("sh", "-c", PROBE + "; kill -TERM $$"), b""),
    "command not found": (("no-such-command-nslaunch",), None),
    "not executable": (("/etc/hostname",), None),
}


HELPER = "namespace, per-datum helper"  # the launcher's fallback (and runtime_longrun's path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_namespace_datum_is_the_process_popen_would_start(tmp_path: Path, variant: str
                                                            ) -> None:  # fmt: skip
    """Through the launcher, through the helper, and as a plain Popen (rewrite mode)."""
    argv, stdin = VARIANTS[variant]
    got: dict[str, tuple[DatumOutcome, str]] = {}
    for mode in (NS, HELPER, RW):
        slot = _slot(tmp_path, mode.replace(" ", "_").replace(",", ""))
        runtime = _runtime(RW if mode == RW else NS,
                           **({"python": "/nonexistent/python3"} if mode == HELPER else {}))
        try:
            outcome = runtime.run(_run(slot, *argv, stdin=stdin))
        finally:
            runtime.close()
        got[mode] = outcome, (slot / "log").read_text().replace(str(slot), "SLOT")
        assert runtime.launcher.stats["datums"] == (1 if mode == NS else 0)
    assert got[NS] == got[RW]
    assert got[HELPER] == got[RW]


def _hang(slot: Path) -> str:
    """A datum whose group holds a background process; both run until killed."""
    return f"sleep 86399 & echo $! > {slot}/bg; echo $$ > {slot}/fg; wait"


def _start(runtime: SubprocessRuntime, run: DatumRun) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(runtime.run(run)))
    thread.start()
    return thread, box


KILLS: dict[str, Callable[[SubprocessRuntime], None]] = {
    "datum_timeout": lambda r: None,
    "kill_datum (RestartDatum)": lambda r: r.kill_datum("j", "d"),
    "kill_job (StopJob)": lambda r: r.kill_job("j"),
    "close (shutdown)": lambda r: r.close(),
}


@pytest.mark.parametrize("how", KILLS)
def test_kills_reach_the_namespace_datums_whole_process_group(tmp_path: Path, how: str) -> None:
    """The datum and its background process die; another job's datum with the same datum id
    runs on (except at shutdown, which kills every datum)."""
    slot, runtime, gate = _slot(tmp_path, "slot"), _runtime(), tmp_path / "gate"
    other = _slot(tmp_path, "other")
    timeout = 2.0 if how == "datum_timeout" else None  # the datum itself never ends
    run = _run(slot, "sh", "-c", _hang(slot), timeout=timeout)
    wait_gate = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo ok"
    try:
        thread, box = _start(runtime, run)
        bystander, other_box = _start(runtime, _run(other, "sh", "-c", wait_gate,
                                                    env={**ENV, "PACH_JOB_ID": "k"}))  # fmt: skip
        if timeout is None:  # (with a timeout the runtime kills it on its own)
            wait_for(lambda: _read(slot / "bg"), "the datum's background process")
        KILLS[how](runtime)
        thread.join(120)
        assert box == [DatumOutcome(-signal.SIGKILL, timed_out=timeout is not None)]
        bg = int(_read(slot / "bg") or 0)
        assert bg, "killed before it started its background process (a machine this slow?)"
        wait_for(lambda: not _alive(bg), "the background process to die")
        gate.touch()
        bystander.join(120)
    finally:
        runtime.close()
    if how.startswith("close"):
        assert other_box == [DatumOutcome(-signal.SIGKILL)]
    else:
        assert other_box == [DatumOutcome(0)] and _read(other / "log") == "ok"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def test_each_datum_sees_its_own_pfs_and_no_other_process_sees_either(tmp_path: Path) -> None:
    gate, runtime = tmp_path / "gate", _runtime()
    slots = [_slot(tmp_path, name, name) for name in ("a", "b")]
    script = (f"ls /pfs/in > /pfs/out/seen; echo $$ > /pfs/out/pid; "
              f"while [ ! -e {gate} ]; do sleep 0.05; done")  # fmt: skip
    try:
        started = [_start(runtime, _run(s, "sh", "-c", script))[0] for s in slots]
        pids = [int(wait_for(lambda s=s: _read(s / "pfs" / "out" / "pid"), "datum")) for s in slots]
        mounts = {p: Path(f"/proc/{p}/mountinfo").read_text() for p in [*pids, os.getpid(),
                                                                       *_launchers()]}  # fmt: skip
        gate.touch()
        for t in started:
            t.join(120)
    finally:
        runtime.close()
    assert [_read(s / "pfs" / "out" / "seen") for s in slots] == ["a", "b"]
    for pid, table in mounts.items():
        for s in slots:  # a datum's scratch tree is mounted in its own namespace only
            assert (f"/{s.name}/pfs /pfs " in table) == (pid == pids[slots.index(s)]), (pid, s)


@pytest.mark.parametrize("python", ["/nonexistent/python3", "/bin/false"])
def test_a_launcher_that_cannot_start_falls_back_to_the_per_datum_helper(
        tmp_path: Path, python: str) -> None:  # fmt: skip
    """It is tried MAX_FAILURES times, then every datum is started by the helper: all run."""
    runtime = _runtime(python=python)
    try:
        for i in range(5):
            slot = _slot(tmp_path, f"s{i}")
            assert runtime.run(_run(slot, "sh", "-c", "cp /pfs/in/* /pfs/out/")) == DatumOutcome(0)
            assert (slot / "pfs" / "out" / f"s{i}").read_text() == "x"
    finally:
        runtime.close()
    assert runtime.launcher.stats == {"launchers": MAX_FAILURES if python != "/nonexistent/python3"
                                      else 0, "datums": 0}  # fmt: skip


def test_a_request_too_large_for_the_socket_runs_on_the_helper_and_keeps_the_launcher(
        tmp_path: Path) -> None:  # fmt: skip
    """EMSGSIZE (a small socket buffer, injected) sends that one datum to the helper; the
    launcher is not taken for dead: the next datum is its second."""
    runtime = _runtime()
    try:
        first = _slot(tmp_path, "first")
        assert runtime.run(_run(first, "true")) == DatumOutcome(0)
        current = runtime.launcher._current
        assert current is not None
        current.control.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = _slot(tmp_path, "big")
        env = {**ENV, "BIG": "x" * 60_000}
        assert runtime.run(_run(big, "sh", "-c", 'cat /pfs/in/big; echo " ${#BIG}"', env=env)
                           ) == DatumOutcome(0)  # fmt: skip
        assert (big / "log").read_text() == "x 60000\n"
        assert runtime.run(_run(_slot(tmp_path, "next"), "true")) == DatumOutcome(0)
    finally:
        runtime.close()
    assert runtime.launcher.stats == {"launchers": 1, "datums": 2}


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory nobody can reach (pytest's tmp_path lies below a 0700 directory of root's)."""
    with tempfile.TemporaryDirectory(prefix="lpd-nslaunch-nobody-", dir="/tmp") as d:
        os.chmod(d, 0o755)
        yield Path(d)


def test_an_unprivileged_launcher_gives_datums_a_user_namespace(open_tmp: Path) -> None:
    """The launcher run as nobody (its interpreter wrapped in setpriv): the datum gets a real
    /pfs through CLONE_NEWUSER and is still nobody."""
    setpriv, py = shutil.which("setpriv"), shutil.which("python3", path="/usr/bin:/bin")
    if os.getuid() != 0 or setpriv is None or py is None:
        pytest.skip("needs root, setpriv and a system python3 to run the launcher as nobody")
    nobody = pwd.getpwnam("nobody")
    wrapper = open_tmp / "python"
    wrapper.write_text(f"#!/bin/sh\nexec {setpriv} --reuid={nobody.pw_uid} "
                       f"--regid={nobody.pw_gid} --clear-groups {py} \"$@\"\n")  # fmt: skip
    wrapper.chmod(0o755)
    slot = _slot(open_tmp, "slot", "hey")
    for p in [slot, *slot.rglob("*")]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    runtime = _runtime(python=str(wrapper))
    try:
        outcome = runtime.run(_run(slot, "sh", "-c", "id -u; cat /pfs/in/slot > /pfs/out/y"))
    finally:
        runtime.close()
    log = (slot / "log").read_text()
    if outcome.returncode == pfsmount.SETUP_FAILED:
        pytest.skip(f"this kernel refuses user namespaces to nobody: {log}")
    assert outcome == DatumOutcome(0), log
    assert log.strip() == str(nobody.pw_uid)
    assert (slot / "pfs" / "out" / "y").read_text() == "hey"
    assert runtime.launcher.stats == {"launchers": 1, "datums": 1}


# ---------------------------------------------------------------- through a real server


def test_a_launcher_killed_mid_job_is_replaced_and_the_job_finishes(
        pach_client: Any, tmp_path: Path) -> None:  # fmt: skip
    c, gate = pach_client, tmp_path / "gate"
    c.create_repo("in")
    put(c, "in", {f"f{i}": f"{i}\n" for i in range(3)})
    sh_pipeline(c, "p", pfs("in", "/*"), f"touch {tmp_path}/started",
                f"while [ ! -e {gate} ]; do sleep 0.05; done", "cp /pfs/in/* /pfs/out/",
                parallelism_spec=pps_pb2.ParallelismSpec(constant=1))  # fmt: skip
    wait_for(lambda: (tmp_path / "started").exists(), "the first datum to start")
    [old] = wait_for(_launchers, "the launcher")
    os.kill(old, signal.SIGKILL)
    gate.touch()
    job = last_job(c, "p")
    assert job.state == pps_pb2.JobState.JOB_SUCCESS, job.reason
    assert read_repo(c, "p") == {f"/f{i}": f"{i}\n" for i in range(3)}
    new = _launchers()
    assert len(new) == 1 and new != [old]


def test_no_process_outlives_the_server(tmp_path: Path) -> None:
    from localpachd.server import start

    mark, before = f"86398.{os.getpid()}", set(_children(os.getpid()))
    server = start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0)
    try:
        import python_pachyderm

        c = python_pachyderm.Client(host="127.0.0.1", port=server.port)
        c.create_repo("in")
        put(c, "in", {"a": "1"})
        sh_pipeline(c, "p", pfs("in", "/*"), f"sleep {mark} & sleep {mark}1")
        wait_for(lambda: len(_processes(mark)) == 2, "the datum and its background process")
        assert len(_launchers()) == 1
    finally:
        server.stop()
    wait_for(lambda: not _processes(mark), lambda: f"datum processes left: {_processes(mark)}")
    assert not _launchers()
    assert not [p for p in set(_children(os.getpid())) - before if _alive(p)]


def test_a_killed_server_leaves_no_launcher_and_no_datum(tmp_path: Path) -> None:
    """SIGKILL to a `serve` process: its launcher sees EOF on its control socket, kills the
    running datum's group and exits (and the kernel's parent-death signal is there too)."""
    mark = f"86397.{os.getpid()}"
    proc, port = serve(tmp_path / "pachd")
    try:
        c = client(port)
        c.create_repo("in")
        put(c, "in", {"a": "1"})
        sh_pipeline(c, "p", pfs("in", "/*"), f"sleep {mark} & sleep {mark}1")
        wait_for(lambda: len(_processes(mark)) == 2, "the datum and its background process")
        launchers = [p for p in _children(proc.pid) if "runtime_nslaunch" in _cmdline(p)]
        assert len(launchers) == 1
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not _alive(launchers[0]), "the launcher to exit")
    wait_for(lambda: not _processes(mark), lambda: f"datum processes left: {_processes(mark)}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def test_helper_and_launcher_share_the_exit_status_of_a_failed_setup(tmp_path: Path) -> None:
    """A bind source that does not exist: the namespace cannot be set up (SETUP_FAILED and the
    helper's message), whichever of them started the datum."""
    got = []
    for python in (None, "/nonexistent/python3"):
        slot = _slot(tmp_path, f"s{len(got)}")
        run = DatumRun(argv=("true",), env=dict(ENV), cwd=slot, stdin=None,
                       stdout_path=slot / "log", stderr_path=slot / "log",
                       binds=((str(slot / "missing"), "/pfs"),))  # fmt: skip
        runtime = _runtime(**({"python": python} if python else {}))
        try:
            got.append((runtime.run(run), "cannot give the datum a private /pfs"
                        in (slot / "log").read_text()))  # fmt: skip
        finally:
            runtime.close()
    assert got == [(DatumOutcome(pfsmount.SETUP_FAILED), True)] * 2
