"""The warm Python runtime: datums of `python -m MODULE` / `python SCRIPT.py` forked from zygotes.

Chosen by `localpachd.runtimes.make_runtime("warm")` (and "auto"); called by the worker's
threads, so every method is thread-safe. A process per datum that re-imports scikit-learn
spends most of its time importing; here a zygote (`localpachd.warm.zygote`, a separate
single-threaded process — never a fork of the gRPC server) has already imported what the
module imports, and each datum is a fresh fork of it, so it starts in milliseconds.

Semantics are those of the subprocess runtime (`localpachd.runtime_subprocess`): same argv,
environment, working directory, stdin, stdout/stderr files (appended), exit status, own session,
datum_timeout (kills the process group: -9, timed_out), `kill_job` and `kill_datum`
(RestartDatum). Every other argv, and the
few environments a fork cannot reproduce (`warm.target.warm_blocker`), run on that fallback.

Zygotes are shared by datums with the same startup environment (`warm.target.startup_env`):
one zygote preloads the imports of every target it has served, so the four iris stages import
numpy/pandas/scikit-learn once. `shared=False` gives one zygote per target instead. Project
code is never kept preloaded (each datum imports it afresh); a zygote is replaced when an
installed source file it loaded changes (mtime, e.g. an editable install). `prewarm` (called
at CreatePipeline) starts a zygote and its imports before the first datum; which zygote serves
what, and how a prewarm never holds up datums of targets already loaded: `warm.pool`.

Known differences from a fresh interpreter, all outside what a datum normally observes:
- `str` hashes use the zygote's random seed, shared by its children (equal when PYTHONHASHSEED
  is set, which is then part of the zygote key); `random` and numpy's global generator are
  reseeded from the OS in every child, as a fresh process would be.
- sys.modules already holds the preloaded libraries (also those a datum does not import); their
  import-time side effects happened once, in the zygote; a project module that registers
  itself into a library at import does so in the zygote and again in the child.
- one extra close-on-exec descriptor (the reply socket, numbered >= 1000) is open.
- /proc/<pid>/environ shows the zygote's startup block, not the datum's environment (os.environ
  and getenv are the datum's); a batching slot's worker token is written into that block's
  placeholder (`warm.pool.zygote_env`, `warm.child`), where its worker API looks for it.
- a file in the datum's sys.path[0] that would shadow a preloaded module makes the child
  exec a fresh interpreter instead (then everything is exact).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from localpachd import runtime_pfsmount as pfsmount
from localpachd.runtime import DatumOutcome, DatumRun, Runtime
from localpachd.runtime_subprocess import SubprocessRuntime, open_logs
from localpachd.warm.pool import Pool, ZygoteHandle, ZygoteUnavailable
from localpachd.warm.target import Target, classify, startup_env, warm_blocker


@dataclass
class _Live:
    """A datum in flight: its job and datum, its zygote and, once forked, its pid (= process
    group)."""

    job_id: str
    datum_id: str
    zygote: ZygoteHandle
    pid: int = 0

    def kill(self, reply: socket.socket) -> None:
        """Ask the zygote to kill the datum's group; if the zygote died, kill it ourselves."""
        _send(reply, b"kill")
        if self.pid and self.zygote.proc.poll() is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class WarmRuntime:
    """Runtime protocol (localpachd.runtime.Runtime) with fork-from-zygote Python datums."""

    name = "warm"

    def __init__(self, fallback: Runtime | None = None, shared: bool = True) -> None:
        self.fallback: Runtime = fallback if fallback is not None else SubprocessRuntime()
        self.shared = shared
        self._lock = threading.Lock()
        self.pool = Pool()
        self._live: dict[socket.socket, _Live] = {}  # reply socket -> running datum
        self._waiters: set[threading.Thread] = set()  # prewarm answers awaited (joined by close)
        self._counts = {"warm": 0, "cold": 0, "prewarmed": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Datums run warm and cold, zygote processes started, prewarms sent (benchmarks, tests)."""
        with self._lock:
            return {**self._counts, "zygotes": self.pool.started}

    def run(self, run: DatumRun) -> DatumOutcome:
        target = classify(run.argv, str(run.cwd))
        if target is None or warm_blocker(run.env) or not run.cwd.is_dir():
            return self._cold(run)
        key = self._key(target, run.env)
        zygote = self.pool.for_datum(key, run.env, (target.kind, target.name))
        if zygote is None:
            return self._cold(run)
        try:
            outcome = self._run_warm(zygote, target, run)
        except ZygoteUnavailable:
            self.pool.forget(key, zygote, failed=True)
            return self._cold(run)
        finally:
            self.pool.release(zygote)
        with self._lock:
            self._counts["warm"] += 1
        return outcome

    def prewarm(self, run: DatumRun, placeholder: str) -> bool:
        """Start the zygote that `run` would use and have it preload `run`'s imports now,
        running nothing (called at CreatePipeline: the pipeline's first datum then finds
        scikit-learn loaded instead of waiting for it). `placeholder` is the path that stands
        for each datum's own scratch directory in `run`. Returns at once; False when `run`
        would not run warm, or when its startup environment names the placeholder (then every
        datum has its own zygote key and no prewarm can serve them). A datum arriving
        meanwhile waits for the preload, as it would have waited for its own."""
        target = classify(run.argv, str(run.cwd))
        if target is None or warm_blocker(run.env) or not run.cwd.is_dir():
            return False
        key = self._key(target, run.env)
        if any(placeholder in value for _, value in key if isinstance(value, str)):
            return False
        request = json.dumps({**_request(target, run), "preload_only": True}).encode()
        chosen = self.pool.for_prewarm(key, run.env, (target.kind, target.name), request)
        if chosen is None:
            return False
        zygote, seeds = chosen
        for req in [*seeds, request]:
            try:
                reply = zygote.start(req, [])
            except ZygoteUnavailable:
                self.pool.preloaded(zygote, ok=False)
                continue
            waiter = threading.Thread(target=self._await_preload, args=(zygote, reply),
                                      name="warm-prewarm", daemon=True)  # fmt: skip
            with self._lock:
                self._waiters = {t for t in self._waiters if t.is_alive()}
                self._waiters.add(waiter)
            waiter.start()
        with self._lock:
            self._counts["prewarmed"] += 1
        return True

    def _await_preload(self, zygote: ZygoteHandle, reply: socket.socket) -> None:
        ok = False
        try:
            msg = _recv(reply, None)
            if isinstance(msg, dict) and isinstance(msg.get("watch"), dict):
                zygote.watch.update(msg["watch"])
                ok = True
        finally:
            reply.close()
            self.pool.preloaded(zygote, ok)

    def _key(self, target: Target, env: dict[str, str]) -> tuple[Any, ...]:
        key: tuple[Any, ...] = startup_env(env)
        if not self.shared:
            key += ((target.kind, target.name),)
        return key

    def _cold(self, run: DatumRun) -> DatumOutcome:
        with self._lock:
            self._counts["cold"] += 1
        return self.fallback.run(run)

    def _run_warm(self, zygote: ZygoteHandle, target: Target, run: DatumRun) -> DatumOutcome:
        request = json.dumps(_request(target, run)).encode()
        out, err = open_logs(run)  # as the subprocess runtime opens them
        stdin_fd, feeder = _stdin_pipe(run.stdin)
        try:
            reply = zygote.start(request, [stdin_fd, out, err])
        except ZygoteUnavailable:
            if feeder is not None:
                os.close(feeder.fd)
            raise
        finally:
            for fd in {stdin_fd, out, err}:
                os.close(fd)
        with self._lock:
            self._live[reply] = live = _Live(
                run.env.get("PACH_JOB_ID", ""), run.env.get("PACH_DATUM_ID", ""), zygote
            )
        try:
            return self._wait(live, reply, run, feeder)
        finally:
            with self._lock:
                self._live.pop(reply, None)
            reply.close()

    def _wait(
        self, live: _Live, reply: socket.socket, run: DatumRun, feeder: _Feeder | None
    ) -> DatumOutcome:
        """Messages arrive as: `watch` (before the fork), then `pid` (from the zygote) and
        `exit` (from the child) in either order, or `status` (the zygote reaped it)."""
        if feeder is not None:
            feeder.start()  # a zygote that never forks closes the pipe: the writer stops
        try:
            return self._outcome(live, reply, run.timeout)
        finally:
            if feeder is not None:
                feeder.join()

    def _outcome(self, live: _Live, reply: socket.socket, timeout: float | None
                 ) -> DatumOutcome:
        timed_out = False
        while True:
            msg = _recv(reply, timeout if live.pid and not timed_out else None)
            if msg is TimeoutError:
                timed_out = True
                live.kill(reply)
                continue
            if not isinstance(msg, dict) or "error" in msg:
                if not live.pid:
                    raise ZygoteUnavailable(str(msg))  # nothing ran: the fallback may run it
                return DatumOutcome(returncode=-9, timed_out=timed_out)  # killed, zygote gone
            if "watch" in msg:
                live.zygote.watch.update(msg["watch"])
            elif "pid" in msg:
                live.pid = int(msg["pid"])
            elif "exit" in msg:  # sent by the child itself as it exits
                _send(reply, b"done")  # the zygote must not kill its process group on our EOF
                return DatumOutcome(int(msg["exit"]), timed_out=timed_out)
            elif "status" in msg:  # sent by the zygote once it reaped the child
                return DatumOutcome(os.waitstatus_to_exitcode(msg["status"]), timed_out)

    def kill_job(self, job_id: str) -> None:
        """Kill the running datums of one job (StopJob, pipeline update)."""
        with self._lock:
            doomed = [(r, d) for r, d in self._live.items() if d.job_id == job_id]
        for reply, datum in doomed:
            datum.kill(reply)
        self.fallback.kill_job(job_id)

    def kill_datum(self, job_id: str, datum_id: str) -> None:
        """Kill one running datum (RestartDatum), warm or on the fallback."""
        with self._lock:
            doomed = [(r, d) for r, d in self._live.items()
                      if (d.job_id, d.datum_id) == (job_id, datum_id)]  # fmt: skip
        for reply, datum in doomed:
            datum.kill(reply)
        self.fallback.kill_datum(job_id, datum_id)

    def close(self, timeout: float = 30.0) -> None:
        """Kill every running datum and stop every zygote (server shutdown); the threads
        awaiting prewarms and closing retired zygotes end with them and are joined (bounded)."""
        for zygote in self.pool.close():
            zygote.close()
        self.fallback.close()
        with self._lock:
            waiters = list(self._waiters)
        deadline = time.monotonic() + timeout
        for t in [*waiters, *self.pool.closers()]:
            t.join(max(0.0, deadline - time.monotonic()))


def _request(target: Target, run: DatumRun) -> dict[str, Any]:
    cwd = str(run.cwd)
    if target.kind == "module":
        path0 = os.path.realpath(cwd)
    else:
        script = os.path.join(cwd, target.name)
        path0 = os.path.dirname(os.path.realpath(script))
    return {
        "kind": target.kind,
        "name": target.name,
        "argv": list(run.argv),
        "env": dict(run.env),
        "cwd": cwd,
        "path0": path0,
        **_namespace(run),
    }


def _namespace(run: DatumRun) -> dict[str, Any]:
    """Where the kernel allows, the forked datum enters its own mount namespace (a real /pfs)."""
    if not run.binds or pfsmount.mode() != pfsmount.NAMESPACE:
        return {}
    return {"ns_root": pfsmount.ns_root(run.binds), "binds": [list(b) for b in run.binds]}


class _Feeder:
    """Writes a datum's stdin bytes into its pipe without blocking the caller on a slow reader."""

    def __init__(self, fd: int, data: bytes) -> None:
        self.fd, self.data = fd, data
        self.thread = threading.Thread(target=self._write, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _write(self) -> None:
        try:
            view = memoryview(self.data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            pass  # the datum closed stdin or exited without reading it all, as with communicate()
        finally:
            os.close(self.fd)

    def join(self) -> None:
        self.thread.join()


def _stdin_pipe(data: bytes | None) -> tuple[int, _Feeder | None]:
    if data is None:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
    r, w = os.pipe2(os.O_CLOEXEC)
    return r, _Feeder(w, data)


def _recv(reply: socket.socket, timeout: float | None) -> Any:
    """One message from the zygote: a dict, None at EOF, or TimeoutError (the class)."""
    reply.settimeout(timeout)
    try:
        msg = reply.recv(1 << 20)
    except TimeoutError:
        return TimeoutError
    except OSError:
        return None
    return json.loads(msg) if msg else None


def _send(reply: socket.socket, message: bytes) -> None:
    try:
        reply.send(message)
    except OSError:
        pass
