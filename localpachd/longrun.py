"""The supervisor of spout and service pipelines: one long-lived process per running pipeline.

Started by `localpachd.pps.register` and closed by a server stop hook (its thread joined and
every process ended before the store closes). Pachyderm 2.7 runs a spout's or a service's
`transform.cmd` once, as a long-lived process (a spout writes to its output repo through the
API), and restarts it when it exits. The supervisor does the same by reconciling, on every store
change and at least every `MAX_WAIT` seconds, the processes it runs with the pipelines that want
one (`programs(tx)`): a new, started or updated pipeline gets its process; a stopped, updated or
deleted one loses it; a process that exits is started again after a backoff that doubles with
every quick exit (`backoff`, pure).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localpachd import errors, runtime_longrun
from localpachd.runtime_longrun import Process
from localpachd.store import Store, Tx

log = logging.getLogger("localpachd.longrun")

MAX_WAIT = 0.5  # seconds between passes at most (an exit is noticed within this)
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_RUN = 60.0  # a process that ran this long resets the backoff

Key = tuple[str, str, int]  # project, pipeline, version


@dataclass(frozen=True)
class Program:
    """What one pipeline's process runs."""

    argv: tuple[str, ...]
    stdin: bytes | None
    env: dict[str, str] = field(compare=False)
    cwd: Path
    log_path: Path


Programs = Callable[[Tx], dict[Key, Program]]


def backoff(quick_exits: int) -> float:
    """Seconds before the next start after `quick_exits` exits in a row that came too soon."""
    if quick_exits <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (quick_exits - 1)))


@dataclass
class _Slot:
    program: Program
    proc: Process | None = None
    started: float = 0.0
    quick_exits: int = 0
    next_start: float = 0.0
    starts: int = 0


class Supervisor:
    """Runs, restarts and stops the processes `programs(tx)` asks for."""

    def __init__(self, store: Store, programs: Programs) -> None:
        self.store = store
        self.programs = programs
        self._slots: dict[Key, _Slot] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="localpachd-longrun", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("long-running process supervisor still running %.0f s after stop",
                            timeout)  # fmt: skip
        for key in list(self._slots):
            self._end(key)

    def starts(self, key: Key) -> int:
        """How many times the process of `key` was started (0: not supervised)."""
        slot = self._slots.get(key)
        return slot.starts if slot else 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            seen = self.store.events.version
            wait = MAX_WAIT
            try:
                wait = self._pass(time.monotonic())
            except errors.PachError:
                if self._stop.is_set():
                    return
                log.exception("long-running process pass failed")
            except Exception:  # the supervisor must survive one bad pipeline
                log.exception("long-running process pass failed")
            self.store.events.wait_change(seen, max(0.01, min(wait, MAX_WAIT)))

    def _pass(self, now: float) -> float:
        """Start, restart and stop processes; seconds until the next start is due."""
        with self.store.read() as tx:
            wanted = self.programs(tx)
        for key in [k for k, s in self._slots.items() if wanted.get(k) != s.program]:
            self._end(key)
        soonest = MAX_WAIT
        for key, program in wanted.items():
            if self._stop.is_set():
                break
            slot = self._slots.setdefault(key, _Slot(program))
            soonest = min(soonest, self._tend(key, slot, now))
        return soonest

    def _tend(self, key: Key, slot: _Slot, now: float) -> float:
        if slot.proc is not None:
            code = slot.proc.poll()
            if code is None:
                return MAX_WAIT
            ran = now - slot.started
            slot.quick_exits = 0 if ran >= HEALTHY_RUN else slot.quick_exits + 1
            slot.next_start = now + backoff(slot.quick_exits)
            slot.proc = None
            log.info("pipeline %s/%s exited with %s; restart in %.1f s", key[0], key[1], code,
                     slot.next_start - now)  # fmt: skip
        if now < slot.next_start:
            return slot.next_start - now
        p = slot.program
        slot.proc = runtime_longrun.spawn(p.argv, p.stdin, p.env, p.cwd, p.log_path)
        slot.started, slot.starts = now, slot.starts + 1
        if slot.proc is None:  # cannot start: retried with the same backoff as an exit
            slot.quick_exits += 1
            slot.next_start = now + backoff(slot.quick_exits)
        return MAX_WAIT

    def _end(self, key: Key) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None and slot.proc is not None:
            runtime_longrun.stop(slot.proc)


def pipeline_env(project: str, name: str, host: str, port: int,
                 spec_env: dict[str, str], python_dir: str) -> dict[str, str]:  # fmt: skip
    """A spout's or service's environment: the server's, with localpachd's interpreter first on
    PATH, transform.env, the pipeline's names and the PACHD_* address a pipeline's
    python-pachyderm `Client.new_in_cluster()` connects to."""
    env = dict(os.environ)
    env["PATH"] = python_dir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.update(spec_env)
    reach = "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host
    env.update(PPS_PIPELINE_NAME=name, PPS_PROJECT_NAME=project,
               PACHD_PEER_SERVICE_HOST=reach, PACHD_PEER_SERVICE_PORT=str(port),
               PACHD_SERVICE_HOST=reach, PACHD_SERVICE_PORT=str(port))  # fmt: skip
    return env
