"""A scripted stand-in for agent.sync.sync_once, used by the runner's unit tests.

It honours the contract's `verify` hook exactly like the real sync_once (called after the fetch
with the head sha; a PachsyncError becomes a failed result with the error type's kind and
disposition), so the runner's stall gate and signature hook are exercised without git or a
cluster.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import Conflict, Disposition, PachsyncError, SpecInvalid, Transient
from agent.source.verify import SignatureInvalid
from agent.sync import SyncOptions, SyncResult

# The error types a scripted result may name as its kind.
ERROR_TYPES = {cls.kind: cls for cls in (PachsyncError, SpecInvalid, Transient, Conflict,
                                         SignatureInvalid)}


def disposition_for(result: str, kind: str | None) -> Disposition | None:
    """The disposition sync_once records for `result` ended by an error of `kind`."""
    if result == "partial":
        return Disposition.REPORT
    if result == "invalid":
        return Disposition.STALL
    if result != "failed":
        return None
    return ERROR_TYPES[kind or PachsyncError.kind].disposition


@dataclass
class Step:
    result: str = "unchanged"
    kind: str | None = None
    errors: tuple[str, ...] = ()
    actions: dict[str, str] = field(default_factory=dict)
    drift: int = 0
    oos: int = 0
    commit_none: bool = False


class FakeSync:
    """Call it like sync_once; `head` is the remote's head, `steps` the outcomes in order."""

    def __init__(self, head: str = "c1", steps: list[Step] | None = None) -> None:
        self.head = head
        self.steps = list(steps or [])
        self.calls = 0
        self.seen: list[str | None] = []
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def __call__(self, opts: SyncOptions) -> SyncResult:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            step = self.steps.pop(0) if self.steps else Step()
        try:
            self.release.wait(30)
            return self._result(opts, step)
        finally:
            with self._lock:
                self.concurrent -= 1

    def _result(self, opts: SyncOptions, step: Step) -> SyncResult:
        started = time.time()
        commit = None if step.commit_none else self.head
        self.seen.append(commit)
        if commit is not None and opts.verify is not None:
            try:
                opts.verify(Path("."), commit)
            except SpecInvalid:
                raise
            except PachsyncError as exc:
                return SyncResult(commit, "failed", started, 0.01, {}, (exc.message,),
                                  exc.kind, 0, 0, 0, disposition=exc.disposition)
        return SyncResult(commit, step.result, started, 0.01, dict(step.actions), step.errors,
                          step.kind, step.drift, step.oos, 3,
                          disposition=disposition_for(step.result, step.kind))
