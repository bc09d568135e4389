"""Which zygote serves a datum or a prewarm: per startup environment, the current zygote and,
while a prewarm imports something new, a loader zygote that replaces it once ready.

Used by `localpachd.runtime_warm` (all methods thread-safe). A zygote is single-threaded: while
it imports scikit-learn for one pipeline's prewarm (seconds), it cannot fork a datum of another
pipeline. So a prewarm that needs imports the current zygote lacks goes to a *loader*: a fresh
zygote that preloads everything the current one was prewarmed with, then the new target. The
current zygote keeps serving the targets it already has; datums of anything else wait on the
loader (behind its imports, as they would have waited for their own). When the loader has
answered every prewarm sent to it, it becomes the current zygote and the old one retires,
closing once its last datum is done. Datums alone (no prewarm) never start a loader: their
zygote preloads their target in place, as before.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localpachd import forkserve, peercheck
from localpachd.warm.child import TOKEN_ENV
from localpachd.warm.zygote import BOOT

PORT_ENV = "PPS_WORKER_GRPC_PORT"  # a slot's worker API port (localpachd.workerapi.PORT_ENV)

_ROOT = str(Path(__file__).resolve().parents[2])
MAX_FAILURES = 2  # zygote start failures for one key before that key always runs cold
Key = tuple[Any, ...]
TargetId = tuple[str, str]  # (kind, name) of a warm target


class ZygoteUnavailable(Exception):
    """The zygote could not start the datum; nothing ran, so the fallback may run it."""


class ZygoteHandle:
    """Client side of one zygote process: its control socket, the files it depends on and the
    targets it has been given (prewarmed or run)."""

    def __init__(self, env: dict[str, str]) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BOOT, _ROOT, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=zygote_env(env),
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()
        self.control = mine
        self.lock = threading.Lock()
        self.watch: dict[str, int] = {}
        self.inflight = 0
        self.retired = False
        self.targets: set[TargetId] = set()
        self.prewarms: dict[TargetId, bytes] = {}  # the preload requests it was sent, in order
        self.pending = 0  # prewarms not answered yet

    def start(self, request: bytes, fds: list[int]) -> socket.socket:
        """Send one request; returns the socket its answers arrive on."""
        try:
            return forkserve.send_request(self.control, self.lock, request, fds)
        except forkserve.NotSent as sent:
            raise ZygoteUnavailable(str(sent.error)) from sent.error

    def stale(self) -> bool:
        for path, mtime in list(self.watch.items()):
            try:
                if os.stat(path).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False

    def close(self) -> None:
        self.control.close()  # EOF: the zygote kills what is left and exits
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def zygote_env(env: dict[str, str]) -> dict[str, str]:
    """A zygote's own startup environment: the first datum's, minus the per-slot worker API
    variables, plus the placeholder a batching child writes its token over (every child gets
    its complete environment at the fork: `warm.child`)."""
    base = {k: v for k, v in env.items() if k not in (TOKEN_ENV, PORT_ENV)}
    return peercheck.reserve(base, TOKEN_ENV)


class Pool:
    """Current and loading zygotes by key; `factory` starts a zygote process (tests swap it)."""

    def __init__(self, factory: Callable[[dict[str, str]], ZygoteHandle] = ZygoteHandle) -> None:
        self.factory = factory
        self.lock = threading.Lock()
        self.current: dict[Key, ZygoteHandle] = {}
        self.loading: dict[Key, ZygoteHandle] = {}
        self.failures: dict[Key, int] = {}
        self.closed = False
        self.started = 0  # zygote processes started, for benchmarks and tests
        self._closers: list[threading.Thread] = []  # closing retired zygotes (see closers())

    def for_datum(self, key: Key, env: dict[str, str], target: TargetId) -> ZygoteHandle | None:
        """The zygote to fork this datum from (counted in flight), or None: run it cold."""
        with self.lock:
            if not self._usable(key):
                return None
            current = self._live(self.current, key)
            loading = self._live(self.loading, key)
            if loading is not None and (current is None or target not in current.targets):
                chosen = loading  # it will have everything: wait for it
            else:
                chosen = current or self._new(self.current, key, env)
            chosen.targets.add(target)
            chosen.inflight += 1
            return chosen

    def for_prewarm(
        self, key: Key, env: dict[str, str], target: TargetId, request: bytes
    ) -> tuple[ZygoteHandle, list[bytes]] | None:
        """The zygote that should preload `target` and the requests to send it (earlier
        prewarms first when it is a new loader); None when nothing needs doing."""
        with self.lock:
            if not self._usable(key):
                return None
            current = self._live(self.current, key)
            loading = self._live(self.loading, key)
            if current is not None and target in current.targets:
                return None
            if loading is not None and target in loading.targets:
                return None
            seeds: list[bytes] = []
            if current is None:
                chosen = self._new(self.current, key, env)
            elif loading is not None:
                chosen = loading
            else:
                chosen = self._new(self.loading, key, env)
                seeds = list(current.prewarms.values())
                chosen.targets.update(current.prewarms)
                chosen.prewarms.update(current.prewarms)
            chosen.targets.add(target)
            chosen.prewarms[target] = request
            chosen.inflight += 1 + len(seeds)
            chosen.pending += 1 + len(seeds)
            return chosen, seeds

    def preloaded(self, zygote: ZygoteHandle, ok: bool) -> None:
        """One prewarm was answered (`ok`) or failed (the zygote died importing, or could not be
        reached): a loader with none left becomes current; a failed zygote is dropped (a failed
        loader leaves the current zygote serving) and counted as a start failure."""
        with self.lock:
            zygote.pending -= 1
            zygote.inflight -= 1
            for table in (self.current, self.loading) if not ok else ():
                for key, held in list(table.items()):
                    if held is zygote:  # no longer handed out; counts as a start failure
                        del table[key]
                        zygote.retired = True
                        self.failures[key] = self.failures.get(key, 0) + 1
            for key, loader in list(self.loading.items()):
                if loader is zygote and zygote.pending == 0:
                    del self.loading[key]
                    old = self.current.get(key)
                    self.current[key] = zygote
                    if old is not None and old is not zygote:
                        old.retired = True
                        self._close_if_idle(old)
            self._close_if_idle(zygote)

    def release(self, zygote: ZygoteHandle) -> None:
        with self.lock:
            zygote.inflight -= 1
            self._close_if_idle(zygote)

    def forget(self, key: Key, zygote: ZygoteHandle, failed: bool) -> None:
        """Stop handing out `zygote` (it failed to start a datum)."""
        with self.lock:
            for table in (self.current, self.loading):
                if table.get(key) is zygote:
                    del table[key]
                    zygote.retired = True
            if failed:
                self.failures[key] = self.failures.get(key, 0) + 1

    def close(self) -> list[ZygoteHandle]:
        """No more zygotes; returns every one still known, for the caller to close."""
        with self.lock:
            self.closed = True
            out = [*self.current.values(), *self.loading.values()]
            self.current.clear()
            self.loading.clear()
        return out

    def _usable(self, key: Key) -> bool:
        return not self.closed and self.failures.get(key, 0) < MAX_FAILURES

    def _live(self, table: dict[Key, ZygoteHandle], key: Key) -> ZygoteHandle | None:
        """table[key] unless it died (counted as a failure) or a file it loaded changed."""
        zygote = table.get(key)
        if zygote is None:
            return None
        if zygote.proc.poll() is not None:
            self.failures[key] = self.failures.get(key, 0) + 1
        elif not zygote.stale():
            return zygote
        zygote.retired = True
        del table[key]
        self._close_if_idle(zygote)
        return None

    def _new(self, table: dict[Key, ZygoteHandle], key: Key, env: dict[str, str]
             ) -> ZygoteHandle:
        zygote = table[key] = self.factory(env)
        self.started += 1
        return zygote

    def closers(self) -> list[threading.Thread]:
        """The threads still closing retired zygotes (the runtime's close joins them)."""
        with self.lock:
            return [t for t in self._closers if t.is_alive()]

    def _close_if_idle(self, zygote: ZygoteHandle) -> None:
        if zygote.retired and zygote.inflight == 0:
            closer = threading.Thread(target=zygote.close, name="warm-zygote-close",
                                      daemon=True)  # fmt: skip
            self._closers = [t for t in self._closers if t.is_alive()]
            self._closers.append(closer)
            closer.start()
