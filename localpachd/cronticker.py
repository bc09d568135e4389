"""Cron tick commits: the ticker thread of a server, and the one tick RunCron makes.

Started by `localpachd.pps.register` (and closed by a server stop hook, joined before the store
closes); `write_tick` is also called by the pps servicer's RunCron. The schedule rules are in
`localpachd.cron` (pure). The ticker keeps, per cron input of each running pipeline version, the
time of its next tick; on first sight (pipeline created, started, or server restarted) it reads
the last tick from the cron repo, so a stopped pipeline never ticks and a restart catches up
with one tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from localpachd import errors
from localpachd.cron import due, parse, parse_tick, tick_name
from localpachd.pfs import files, model
from localpachd.store import Store, Tx

log = logging.getLogger("localpachd.cron")

MAX_WAIT = 1.0  # seconds between passes at most: new, started and stopped pipelines are seen


def cron_inputs(inp: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every cron input of an input tree (the snake_case dict of a spec), depth first."""
    if not inp:
        return []
    if inp.get("cron"):
        return [inp["cron"]]
    kinds = ("cross", "union", "join", "group")
    return [c for k in kinds for child in inp.get(k) or [] for c in cron_inputs(child)]


def write_tick(tx: Tx, cron: dict[str, Any], project: str, when: datetime, empty: Any) -> bool:
    """One tick commit on the cron repo's master (False: an open commit is in the way)."""
    proj = str(cron.get("project") or project)
    head = model.branch_head(tx, model.BranchKey(proj, str(cron["repo"]), "master"))
    if head is not None and not head.is_finished:
        return False
    c = model.start_commit(tx, proj, str(cron["repo"]), "master")
    if cron.get("overwrite"):
        files.delete_path(tx, c.cid, "/")
    files.write_entries(tx, c.cid, [("/" + tick_name(when), empty, "")])
    model.finish_commit(tx, model.get_commit(tx, c.cid))
    return True


def last_tick(tx: Tx, cron: dict[str, Any], project: str) -> datetime | None:
    """The newest tick file's time in the cron repo (None: no tick yet or no repo)."""
    proj = str(cron.get("project") or project)
    head = model.branch_head(tx, model.BranchKey(proj, str(cron["repo"]), "master"))
    if head is None:
        return None
    row = tx.one("SELECT MAX(path) AS p FROM files WHERE cid=?", (head.cid,))
    return parse_tick(row["p"]) if row is not None and row["p"] else None


def start_of(cron: dict[str, Any]) -> datetime | None:
    start = cron.get("start")
    return parse_tick(str(start)) if start else None


Key = tuple[str, str, int, str]  # project, pipeline, version, cron input name
Pipelines = Callable[[Tx], list[tuple[str, str, int, dict[str, Any]]]]


class Ticker:
    """The thread that makes scheduled ticks for every running pipeline with cron inputs.
    `pipelines(tx)` lists (project, name, version, input dict) of the pipelines not stopped."""

    def __init__(self, store: Store, pipelines: Pipelines) -> None:
        self.store = store
        self.pipelines = pipelines
        self._next: dict[Key, datetime] = {}
        self._failed: dict[Key, str] = {}  # the last error of each input, logged once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="localpachd-cron", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()  # also wakes the loop's wait
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("cron ticker still running %.0f s after stop", timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = MAX_WAIT
            try:
                wait = self._pass(datetime.now(UTC))
            except errors.PachError:
                if self._stop.is_set():
                    return
                log.exception("cron pass failed")
            except Exception:  # the ticker must survive one bad pipeline
                log.exception("cron pass failed")
            # Not woken by store changes (every write would cost a pass): a new or started
            # pipeline is seen within MAX_WAIT.
            self._stop.wait(max(0.01, min(wait, MAX_WAIT)))

    def _pass(self, now: datetime) -> float:
        """Make every due tick; seconds until the next one is due."""
        with self.store.read() as tx:
            running = self.pipelines(tx)
        live: dict[Key, tuple[str, dict[str, Any]]] = {}
        for project, name, version, inp in running:
            for cron in cron_inputs(inp):
                live[(project, name, version, str(cron.get("name", "")))] = (project, cron)
        self._next = {k: v for k, v in self._next.items() if k in live}
        soonest = MAX_WAIT
        for key, (project, cron) in live.items():
            if self._stop.is_set():
                break
            try:
                soonest = min(soonest, self._one(key, project, cron, now))
                self._failed.pop(key, None)
            except errors.PachError as exc:  # e.g. its repo deleted by hand: the others tick on
                if self._stop.is_set():
                    break
                if self._failed.get(key) != str(exc):
                    log.warning("cron input %r of pipeline %s/%s cannot tick: %s",
                                key[3], key[0], key[1], exc)  # fmt: skip
                self._failed[key] = str(exc)
                self._next.pop(key, None)  # retried from the repo's state on the next pass
        return soonest

    def _live(self, tx: Tx) -> set[Key]:
        return {(project, name, version, str(cron.get("name", "")))
                for project, name, version, inp in self.pipelines(tx)
                for cron in cron_inputs(inp)}  # fmt: skip

    def _one(self, key: Key, project: str, cron: dict[str, Any], now: datetime) -> float:
        schedule = parse(str(cron.get("spec", "")))
        nxt = self._next.get(key)
        if nxt is None:  # first sight (created, started, restarted): from the repo
            with self.store.read() as tx:
                last = last_tick(tx, cron, project)
            known = [t for t in (last, start_of(cron)) if t is not None]
            base = max(known) if known else now
            tick, nxt = due(schedule, base, now)
        else:
            tick, nxt = (nxt, schedule.next_after(nxt)) if nxt <= now else (None, nxt)
            if tick is not None and nxt <= now:  # missed several while busy: one, now
                tick, nxt = now.replace(microsecond=0), schedule.next_after(now)
        if tick is not None:
            empty = self.store.blobs.put_bytes(b"")
            with self.store.write() as tx:
                if key not in self._live(tx):
                    return MAX_WAIT  # stopped, updated or deleted since the pass began
                if not write_tick(tx, cron, project, tick, empty):
                    log.info("cron tick %s skipped: %s has an open commit", tick, cron["repo"])
        self._next[key] = nxt
        return (nxt - now).total_seconds()


NO_CRON = "pipeline doesn't have a cron input"  # Pachyderm 2.7's RunCron text


def run_cron(store: Store, project: str, input_dict: dict[str, Any]) -> None:
    """RunCron: one tick now on each cron input (one commit each, the same time for all, as
    Pachyderm 2.7); errors.PachError (UNKNOWN, 2.7's text) without a cron input."""
    crons = cron_inputs(input_dict)
    if not crons:
        raise errors.PachError(NO_CRON)
    now = datetime.now(UTC)
    empty = store.blobs.put_bytes(b"")
    for cron in crons:
        with store.write() as tx:
            if not write_tick(tx, cron, project, now, empty):
                raise errors.FailedPrecondition(
                    f"cannot tick cron input {cron.get('name')!r}: repo {cron['repo']} has an "
                    "open commit on master: finish or delete it, then run cron again")
