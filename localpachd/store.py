"""Durable state of localpachd: one SQLite database (WAL) plus the content-addressed blob store.

Called by every service module (pfs, transaction, pps, jobs). Extension points:

- `Store.write()` — a context manager yielding a `Tx`: one SQLite write transaction
  (BEGIN IMMEDIATE ... COMMIT), serialised by a process-wide lock, so every module's tables change
  atomically together. It is re-entrant per thread: a nested `store.write()` (e.g. a pps apply
  function called while FinishTransaction applies a Pachyderm transaction) joins the outer one and
  nothing is committed before the outermost block exits. An exception rolls everything back.
- `Tx.emit(Event)` / `Tx.after_commit(fn)` — queued while the transaction runs, delivered only
  after COMMIT succeeded (events via `localpachd.events.EventHub`, on its dispatcher thread).
- `Tx.commit_set_id` — Pachyderm's rule "everything written in one transaction shares one commit-set
  ID": the first commit started inside a `Tx` draws a `uuid4().hex`, later ones reuse it.
- `Tx.savepoint()` — a nested all-or-nothing scope (used to dry-run transactional requests).
- `Store.read()` — a consistent read snapshot (or the thread's current write transaction).
- `Store.register_schema(sql)` — other modules create their own tables (CREATE TABLE IF NOT EXISTS)
  in the same database, so their rows commit atomically with PFS rows.
- `Store.wait_until(fn, timeout)` — block until `fn(tx)` returns a truthy value after some commit.
- `Store.close()` — called last by `RunningServer.stop`, once every thread that uses the store
  was joined. It still never races one: it marks the store closed, waits (bounded) for the
  transactions in flight, and closes each connection only while nobody uses it; a `read()` or
  `write()` begun after it raises `StoreClosed` (UNAVAILABLE). Closing an SQLite connection
  under a running statement crashes the process (segfault), so no statement ever runs on a
  connection without holding it: the write connection under the write lock, read connections
  checked out of a pool (reused by any thread, so they never pile up per thread).

Durability: synchronous=FULL WAL commits, blobs fsynced before the metadata points at them, so a
`kill -9` (or power loss, with fsync on) never loses a finished commit nor exposes a partial file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc

from localpachd import errors
from localpachd.blobs import BlobStore
from localpachd.events import Event, EventHub

T = TypeVar("T")
log = logging.getLogger("localpachd.store")

CLOSE_WAIT = 30.0  # seconds close() waits for the transactions in flight
IDLE_READERS = 8  # read connections kept open between reads (more are opened when needed)


class StoreClosed(errors.PachError):
    """The store was closed (the server is stopping): nothing was read or written."""

    code = grpc.StatusCode.UNAVAILABLE

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects(
    name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS repos(
    project TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL DEFAULT 'user',
    description TEXT NOT NULL DEFAULT '', created REAL NOT NULL, PRIMARY KEY(project, name));
CREATE TABLE IF NOT EXISTS branches(
    project TEXT NOT NULL, repo TEXT NOT NULL, name TEXT NOT NULL, head_cid INTEGER,
    seq INTEGER NOT NULL, trigger BLOB, PRIMARY KEY(project, repo, name));
CREATE TABLE IF NOT EXISTS branch_prov(
    project TEXT NOT NULL, repo TEXT NOT NULL, branch TEXT NOT NULL,
    up_project TEXT NOT NULL, up_repo TEXT NOT NULL, up_branch TEXT NOT NULL,
    PRIMARY KEY(project, repo, branch, up_project, up_repo, up_branch));
CREATE TABLE IF NOT EXISTS commits(
    cid INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, repo TEXT NOT NULL,
    id TEXT NOT NULL, branch TEXT, parent_cid INTEGER, origin TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', started REAL NOT NULL, finishing REAL, finished REAL,
    error TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0,
    base_pending INTEGER NOT NULL DEFAULT 0, UNIQUE(project, repo, id));
CREATE INDEX IF NOT EXISTS commits_by_id ON commits(id);
CREATE TABLE IF NOT EXISTS commit_prov(cid INTEGER NOT NULL, up_cid INTEGER NOT NULL,
    PRIMARY KEY(cid, up_cid));
CREATE TABLE IF NOT EXISTS files(
    cid INTEGER NOT NULL, path TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL,
    datum TEXT NOT NULL DEFAULT '', PRIMARY KEY(cid, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transactions(
    id TEXT PRIMARY KEY, started REAL NOT NULL, commit_set TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txn_ops(
    txn TEXT NOT NULL, seq INTEGER NOT NULL, method TEXT NOT NULL, request BLOB NOT NULL,
    response BLOB NOT NULL DEFAULT x'', PRIMARY KEY(txn, seq));
"""


class Tx:
    """One write (or read) transaction. Use `q`/`one`/`x`; never COMMIT yourself."""

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self.conn = conn
        self.writable = writable
        self.events: list[Event] = []
        self._after: list[Callable[[], None]] = []
        self._commit_set: str | None = None
        self._sp = 0

    def x(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)

    @property
    def commit_set_id(self) -> str:
        if self._commit_set is None:
            self._commit_set = uuid.uuid4().hex
        return self._commit_set

    def use_commit_set(self, commit_set: str) -> None:
        """Make commits started from now on in this Tx share `commit_set` (a Pachyderm txn's)."""
        self._commit_set = commit_set

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._sp += 1
        name = f"sp{self._sp}"
        n_events, n_after, cs = len(self.events), len(self._after), self._commit_set
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            del self.events[n_events:]
            del self._after[n_after:]
            self._commit_set = cs
            raise
        else:
            self.conn.execute(f"RELEASE {name}")
        finally:
            self._sp -= 1


class Store:
    def __init__(self, data_dir: Path, fsync: bool = True) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_data_dir(data_dir)
        self.blobs = BlobStore(data_dir / "blobs", fsync=fsync)
        self.events = EventHub()
        self.fsync = fsync
        self._db_path = data_dir / "localpachd.sqlite3"
        self._lock = threading.RLock()  # the write connection: held by the one writer
        self._local = threading.local()
        # Read connections: `_idle` ones are free for any thread; `_busy` counts those in use.
        self._pool = threading.Condition(threading.Lock())
        self._idle: list[sqlite3.Connection] = []
        self._busy = 0
        self._closed = False
        self._wconn_open = True
        self._wconn = self._connect()
        self._wconn.executescript(SCHEMA)
        with self.write() as tx:
            if tx.one("SELECT 1 FROM projects WHERE name='default'") is None:
                tx.x("INSERT INTO projects(name, description, created) VALUES('default', '', ?)",
                     (time.time(),))
            if tx.one("SELECT 1 FROM meta WHERE key='cluster_id'") is None:
                tx.x("INSERT INTO meta VALUES('cluster_id', ?)", (uuid.uuid4().hex,))
        self.collect_garbage()

    def collect_garbage(self) -> tuple[int, int]:
        """Free blobs no commit references any more (deleted repos, dropped commits, aborted
        uploads). Called at start-up, when no upload can be in flight (one server per data dir);
        every blob reference lives in the `files` table."""
        with self.read() as tx:
            live = {r[0] for r in tx.conn.execute("SELECT DISTINCT hash FROM files")}
        freed = self.blobs.collect(live)
        if freed[0]:
            log.info("freed %d unreferenced blobs (%d bytes)", *freed)
        return freed

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False,
                               timeout=60)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    @property
    def closed(self) -> bool:
        return self._closed

    def _refuse(self) -> StoreClosed:
        return StoreClosed(f"localpachd is stopping: its store {self.data_dir} is closed "
                           "(retry once the server is running again)")

    def register_schema(self, sql: str) -> None:
        """Create another module's tables/indexes (idempotent DDL) in this database."""
        with self._lock:
            if self._closed:
                raise self._refuse()
            self._wconn.executescript(sql)

    def meta(self, key: str) -> str:
        with self.read() as tx:
            row = tx.one("SELECT value FROM meta WHERE key=?", (key,))
            return str(row["value"]) if row else ""

    @contextmanager
    def write(self) -> Iterator[Tx]:
        current: Tx | None = getattr(self._local, "tx", None)
        if current is not None and current.writable:
            yield current
            return
        with self._lock:
            if self._closed:  # checked under the lock close() takes before closing _wconn
                raise self._refuse()
            tx = Tx(self._wconn, writable=True)
            self._local.tx = tx
            before = self._wconn.total_changes
            tx.x("BEGIN IMMEDIATE")
            try:
                yield tx
            except BaseException:
                tx.x("ROLLBACK")
                raise
            else:
                self.blobs.sync()  # blobs first: metadata never points at unsynced content
                tx.x("COMMIT")
            finally:
                self._local.tx = current
            changed = self._wconn.total_changes != before
            if self._closed:  # close() gave up waiting for this transaction: close it now
                self._close_writer()
        if tx.events:
            self.events.publish(tx.events)
        elif changed:  # a write that changed nothing must not wake the job scheduler (busy loop)
            self.events.bump()
        for fn in tx._after:
            fn()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        current: Tx | None = getattr(self._local, "tx", None)
        if current is not None:
            yield current
            return
        conn = self._checkout()
        try:
            tx = Tx(conn, writable=False)
            self._local.tx = tx
            conn.execute("BEGIN")
            try:
                yield tx
            finally:
                self._local.tx = None
                conn.execute("COMMIT")
        finally:
            self._checkin(conn)

    def _checkout(self) -> sqlite3.Connection:
        """A read connection for this thread alone until `_checkin`; StoreClosed once closed."""
        with self._pool:
            if self._closed:
                raise self._refuse()
            self._busy += 1
            if self._idle:
                return self._idle.pop()
        try:
            return self._connect()
        except BaseException:
            self._checkin(None)
            raise

    def _checkin(self, conn: sqlite3.Connection | None) -> None:
        with self._pool:
            self._busy -= 1
            keep = conn is not None and not self._closed and len(self._idle) < IDLE_READERS
            if keep:
                self._idle.append(conn)  # type: ignore[arg-type]
            self._pool.notify_all()
        if conn is not None and not keep:
            conn.close()  # nobody else can reach it: it left the pool

    def wait_until(self, fn: Callable[[Tx], T], timeout: float | None = None,
                   alive: Callable[[], bool] = lambda: True) -> T:
        """Return fn(tx) once it is truthy, re-checking after every commit; the last value on
        timeout or when `alive()` turns false (e.g. the RPC was cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.events.version
            with self.read() as tx:
                value = fn(tx)
            if value or not alive():
                return value
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return value
            self.events.wait_change(seen, min(left, 1.0))

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Refuse new transactions, wait up to `timeout` s for those in flight, close every
        connection nobody uses, and free the data dir. Idempotent. A transaction still running
        after the timeout closes its own connection when it ends (never one in use here)."""
        with self._pool:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        deadline = time.monotonic() + timeout
        self.events.close(timeout)  # after the flag: a subscriber's write is refused, not run
        for conn in idle:
            conn.close()
        with self._pool:
            if not self._pool.wait_for(lambda: self._busy == 0, _left(deadline)):
                log.warning("store closed while %d read(s) still ran; each closes its own "
                            "connection when it ends", self._busy)
        if self._lock.acquire(timeout=_left(deadline)):
            try:
                self._close_writer()
            finally:
                self._lock.release()
        else:
            log.warning("store closed while a write transaction still ran; it closes the "
                        "write connection and frees the data dir when it ends")

    def _close_writer(self) -> None:
        """Close the write connection, then free the data dir (the caller holds `_lock`): a
        second server may open it only once no write of this one can still commit."""
        if self._wconn_open:
            self._wconn_open = False
            self._wconn.close()
            self._lock_file.close()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """One server per data dir: a second one would corrupt nothing (SQLite locks) but would run
    every job twice. The OS drops the lock when the process dies, even by kill -9."""
    f = open(data_dir / "LOCK", "a+")  # noqa: SIM115 (held open for the store's lifetime)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        f.close()
        raise OSError(f"data dir {data_dir} is in use by another localpachd "
                      "(stop it, or choose another --data-dir)") from exc
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
