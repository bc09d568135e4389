"""The event hub: in-process notifications published after a store transaction commits.

`Store.write()` collects events while a transaction runs and hands them to `EventHub.publish`
only after the SQLite COMMIT succeeded, so a subscriber never sees a change that was rolled back.
Subscribers (the pps job engine) are called in order on one dispatcher thread, never while the
write lock is held, so they may open their own `store.write()`. A subscriber that raises is logged
and does not stop the others.

Waiters (InspectCommit wait, SubscribeCommit, InspectCommitSet wait) use `wait_change`, a condition
variable bumped on every commit; the RPCs among them first take a wait slot (`localpachd.waits`),
so they never hold every gRPC handler thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("localpachd.events")

COMMIT_STARTED = "commit_started"  # a commit was opened (USER: StartCommit/ModifyFile; AUTO:
#                                     propagated to a downstream branch or a provenance change)
COMMIT_FINISHED = "commit_finished"  # FinishCommit (error set if it was finished with one)
COMMIT_DELETED = "commit_deleted"  # SquashCommitSet / DropCommitSet
BRANCH_CHANGED = "branch_changed"  # CreateBranch (head/provenance) or DeleteBranch
REPO_DELETED = "repo_deleted"  # DeleteRepo (also each repo of DeleteProject/DeleteRepos)


@dataclass(frozen=True)
class Event:
    """One committed change. For commit events all fields are set; `commit_set` == commit id."""

    kind: str
    project: str
    repo: str
    branch: str = ""
    commit_id: str = ""
    commit_set: str = ""
    origin: str = ""  # USER | AUTO | FSCK (commit events)
    error: str = ""  # the commit's error text (commit_finished)


Subscriber = Callable[[Event], None]


class EventHub:
    def __init__(self) -> None:
        self._subs: list[Subscriber] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._cond = threading.Condition()
        self._version = 0
        self._thread = threading.Thread(target=self._run, name="localpachd-events", daemon=True)
        self._thread.start()

    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback(event)` for every event published from now on (dispatcher thread)."""
        self._subs.append(callback)

    def publish(self, events: list[Event]) -> None:
        for ev in events:
            self._queue.put(ev)
        self.bump()

    def bump(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    @property
    def version(self) -> int:
        return self._version

    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until something committed after version `seen` (or timeout); new version."""
        with self._cond:
            if self._version == seen:
                self._cond.wait(timeout)
            return self._version

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until every event published so far was delivered (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(_Marker(done))  # type: ignore[arg-type]
        done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, then end the dispatcher thread (joined up to `timeout` s)."""
        self._queue.put(None)
        self.bump()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while (ev := self._queue.get()) is not None:
            if isinstance(ev, _Marker):
                ev.done.set()
                continue
            for sub in list(self._subs):
                try:
                    sub(ev)
                except Exception:  # a broken subscriber must not stop the others
                    log.exception("event subscriber failed on %s", ev)


@dataclass(frozen=True)
class _Marker:
    done: threading.Event
