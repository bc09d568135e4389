"""The server's side of the namespace launcher (`runtime_nslaunch`): datums with a private /pfs.

Used by `localpachd.runtime_subprocess` in namespace mode; thread-safe (the worker's threads
call `run` at once; `kill_job`, `kill_datum` and `close` come from other threads). One launcher
process per runtime, started at the first datum that needs it and replaced at the next datum
when it has died. `run` raises `LauncherUnavailable` when nothing ran (the runtime is closed,
the launcher cannot start or died before forking the datum, the request cannot be sent): the
caller then starts that datum through the per-datum helper (`runtime_pfsmount.wrap`), as before
the launcher existed; after MAX_FAILURES launchers in a row that never started a datum, every
datum starts that way (logged once).

Semantics are the subprocess runtime's: stdin fed from here (a pipe; /dev/null without stdin),
stdout and stderr on the descriptors given, its own session, datum_timeout kills its process
group (`timed_out`), and so do kill_job (StopJob), kill_datum (RestartDatum) and close
(shutdown). A kill goes through the launcher, which kills only a child it has not reaped yet
(never a recycled pid); once the launcher is gone it is sent from here. A launcher that dies
under a running datum: the datum's group is killed, its log says why, and the attempt fails
(-9), so the worker's datum_tries runs it again on a new launcher.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpachd import forkserve
from localpachd import runtime_nslaunch as nslaunch
from localpachd import runtime_pfsmount as pfsmount
from localpachd.runtime import DatumOutcome, DatumRun

ROOT = str(Path(__file__).resolve().parents[1])  # where `localpachd` is found (BOOT's ROOT)
MAX_FAILURES = 2  # launchers in a row that never started a datum before we stop trying
_CHUNK = 1 << 16  # stdin bytes per write
_LOG = logging.getLogger("localpachd")


class LauncherUnavailable(Exception):
    """The launcher did not start the datum and nothing ran: start it another way."""


class LauncherGone(LauncherUnavailable):
    """The launcher process died (or never started): replace it."""


class LauncherProcess:
    """One launcher process and its control socket."""

    def __init__(self, python: str) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [python, "-I", "-S", "-c", nslaunch.BOOT, ROOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True,  # no terminal's ^C
            )  # fmt: skip
        except OSError as e:
            mine.close()
            raise LauncherGone(f"cannot start the namespace launcher {python!r}: {e}") from e
        finally:
            theirs.close()
        self.control = mine
        self.lock = threading.Lock()
        self.served = False  # it has started a datum

    def start(self, request: bytes, fds: list[int]) -> socket.socket:
        """Send one request; returns the socket its answers arrive on."""
        try:
            return forkserve.send_request(self.control, self.lock, request, fds)
        except forkserve.NotSent as sent:
            e = sent.error
            if e.errno == errno.EMSGSIZE:  # a small socket buffer here: this request only
                raise LauncherUnavailable(f"request too large for the launcher: {e}") from e
            raise LauncherGone(f"the namespace launcher is gone: {e}") from e

    def gone(self) -> bool:
        return self.proc.poll() is not None

    def close(self, timeout: float = 30.0) -> None:
        """EOF on its control socket: it kills and reaps its children, then exits."""
        with self.lock:
            self.control.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class _Live:
    """A datum in flight: its job and datum, its launcher, reply socket and (once known) pid."""

    job_id: str
    datum_id: str
    launcher: LauncherProcess
    reply: socket.socket
    pid: int = 0

    def kill(self) -> None:
        """Ask the launcher to kill the datum's group; if the launcher died, kill it here."""
        try:
            self.reply.send(b"kill")
        except OSError:
            pass
        if self.pid and self.launcher.gone():
            forkserve.kill(self.pid)


class NamespaceLauncher:
    """Starts datums in their own mount namespace through a launcher process (see module doc)."""

    def __init__(self, python: str | None = None) -> None:
        self._python = python
        self._lock = threading.Lock()
        self._current: LauncherProcess | None = None
        self._failures = 0
        self._closed = False
        self._live: dict[socket.socket, _Live] = {}
        self._counts = {"launchers": 0, "datums": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Launcher processes started and datums they started (tests, benchmarks)."""
        with self._lock:
            return dict(self._counts)

    def run(self, run: DatumRun, out: int, err: int) -> DatumOutcome:
        """Run one datum with `out` and `err` as its stdout and stderr (the caller closes them)."""
        request = _request(run)
        for _ in range(MAX_FAILURES):
            launcher = self._launcher()
            try:
                return self._run_on(launcher, request, run, out, err)
            except LauncherGone:
                self._retire(launcher)
        raise LauncherUnavailable("the namespace launcher keeps dying")

    def _launcher(self) -> LauncherProcess:
        with self._lock:
            if self._closed:
                raise LauncherUnavailable("the runtime is closed")
            current = self._current
            if current is not None and not current.gone():
                return current
            if current is not None:  # died since: reap it, start another
                self._forget(current)
                current.close()
            if self._failures >= MAX_FAILURES:
                raise LauncherUnavailable("the namespace launcher cannot start")
            try:
                self._current = LauncherProcess(self._python or sys.executable)
            except LauncherGone as e:
                self._note_failure(str(e))
                raise
            self._counts["launchers"] += 1
            return self._current

    def _retire(self, launcher: LauncherProcess) -> None:
        with self._lock:
            self._forget(launcher)
        launcher.close()

    def _forget(self, launcher: LauncherProcess) -> None:
        """(Lock held.) Stop using `launcher`; one that never started a datum is a failure."""
        if self._current is launcher:
            self._current = None
            if not launcher.served:
                self._note_failure(f"exit status {launcher.proc.poll()}")

    def _note_failure(self, why: str) -> None:
        self._failures += 1
        if self._failures == MAX_FAILURES:
            _LOG.warning("the namespace launcher failed %d times (last: %s): each datum's "
                         "private /pfs is now set up by a helper interpreter of its own "
                         "(slower; see localpachd/runtime_nsclient.py)", MAX_FAILURES, why)

    def _run_on(self, launcher: LauncherProcess, request: bytes, run: DatumRun, out: int,
                err: int) -> DatumOutcome:  # fmt: skip
        stdin_fd, feed = _stdin_pipe(run.stdin)
        try:
            reply = launcher.start(request, [stdin_fd, out, err])
        except LauncherUnavailable:
            if feed is not None:
                os.close(feed)
            raise
        finally:
            os.close(stdin_fd)
        live = _Live(run.env.get("PACH_JOB_ID", ""), run.env.get("PACH_DATUM_ID", ""),
                     launcher, reply)  # fmt: skip
        with self._lock:
            self._live[reply] = live
            if self._closed:  # closed meanwhile: the datum dies at once, as a Popen one would
                live.kill()
        try:
            return self._wait(live, _Feeder(feed, run.stdin or b""), run.timeout, err)
        finally:
            with self._lock:
                self._live.pop(reply, None)
            reply.close()

    def _wait(self, live: _Live, feeder: _Feeder, timeout: float | None, err: int
              ) -> DatumOutcome:  # fmt: skip
        """Until the launcher reports the exit status; feeds stdin meanwhile (communicate())."""
        deadline: float | None = None
        timed_out = False
        with selectors.DefaultSelector() as sel:
            sel.register(live.reply, selectors.EVENT_READ)
            feeder.register(sel)
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = sel.select(left)
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out, deadline = True, None
                    self._kill([live])
                for key, _ in events:
                    if key.fileobj is not live.reply:
                        feeder.write(sel)
                        continue
                    msg = _recv(live.reply)
                    if msg is None:
                        feeder.close()
                        return _launcher_died(live, timed_out, err)
                    if "pid" in msg:
                        live.pid = int(msg["pid"])
                        live.launcher.served = True
                        self._started(live.launcher)
                        deadline = None if timeout is None else time.monotonic() + timeout
                    elif "status" in msg:
                        feeder.close()
                        return DatumOutcome(os.waitstatus_to_exitcode(msg["status"]), timed_out)
                    else:  # {"error": ...}: it could not fork, nothing ran
                        feeder.close()
                        raise LauncherUnavailable(str(msg.get("error")))

    def _started(self, launcher: LauncherProcess) -> None:
        with self._lock:
            self._counts["datums"] += 1
            if self._current is launcher:
                self._failures = 0

    def _kill(self, doomed: list[_Live]) -> None:
        with self._lock:  # under the lock: a reply socket is never closed while we send on it
            for live in doomed:
                if self._live.get(live.reply) is live:
                    live.kill()

    def kill_job(self, job_id: str) -> None:
        with self._lock:
            doomed = [d for d in self._live.values() if d.job_id == job_id]
        self._kill(doomed)

    def kill_datum(self, job_id: str, datum_id: str) -> None:
        with self._lock:
            doomed = [d for d in self._live.values()
                      if (d.job_id, d.datum_id) == (job_id, datum_id)]  # fmt: skip
        self._kill(doomed)

    def close(self) -> None:
        """Kill every datum and stop the launcher (its EOF also kills what is left)."""
        with self._lock:
            self._closed = True
            for live in self._live.values():
                live.kill()
            launcher, self._current = self._current, None
        if launcher is not None:
            launcher.close()


class _Feeder:
    """Writes a datum's stdin bytes into its pipe from the waiting thread, as communicate()."""

    def __init__(self, fd: int | None, data: bytes) -> None:
        self.fd, self.view = fd, memoryview(data)
        if fd is not None:
            os.set_blocking(fd, False)

    def register(self, sel: selectors.BaseSelector) -> None:
        if self.fd is not None:
            if self.view:
                sel.register(self.fd, selectors.EVENT_WRITE)
            else:
                self.close()

    def write(self, sel: selectors.BaseSelector) -> None:
        try:
            self.view = self.view[os.write(self.fd, self.view[:_CHUNK]) :]  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError:  # the datum closed stdin or exited without reading it all
            self.view = self.view[:0]
        if not self.view:
            sel.unregister(self.fd)  # type: ignore[arg-type]
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _request(run: DatumRun) -> bytes:
    """The launcher's request; LauncherUnavailable when it cannot carry `run` exactly (too
    large to send, or what Popen would refuse: the fallback then raises as it always did)."""
    if any(not k or "=" in k for k in run.env):
        raise LauncherUnavailable("an environment variable name the launcher cannot pass")
    request = json.dumps({
        "argv": list(run.argv), "env": run.env, "cwd": str(run.cwd),
        "root": pfsmount.ns_root(run.binds), "binds": [list(b) for b in run.binds],
    }).encode()  # fmt: skip
    if len(request) > nslaunch.MAX_REQUEST or b"\\u0000" in request:
        raise LauncherUnavailable("a request the launcher cannot carry")
    return request


def _stdin_pipe(data: bytes | None) -> tuple[int, int | None]:
    if data is None:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
    return os.pipe2(os.O_CLOEXEC)


def _recv(reply: socket.socket) -> dict[str, Any] | None:
    """One message from the launcher, or None at EOF (it died)."""
    try:
        msg = reply.recv(1 << 16)
    except OSError:
        return None
    return json.loads(msg) if msg else None


def _launcher_died(live: _Live, timed_out: bool, err: int) -> DatumOutcome:
    """The launcher died under a started datum: kill its group, say so in its log, fail it."""
    if not live.pid:
        raise LauncherGone("the namespace launcher exited before starting the datum")
    forkserve.kill(live.pid)
    try:
        os.write(err, b"localpachd: the namespace launcher exited while this datum ran; "
                      b"the datum was killed (the attempt is retried up to datum_tries)\n")
    except OSError:
        pass
    return DatumOutcome(returncode=-signal.SIGKILL, timed_out=timed_out)
