"""Content-addressed file contents on disk: `<data_dir>/blobs/<aa>/<sha256>`.

Used by the pfs module (ModifyFile writes, GetFile reads) and by the pps/worker modules to ingest a
datum's output files (`ingest`) and to lay out inputs (`path`). A blob is written to a temp file,
renamed into place (synced before any metadata points at it), so a crash never leaves a
half-written blob visible; the metadata
(SQLite) only ever points at complete blobs. Blobs are immutable: never write to `path(h)`.
Memory stays bounded: everything streams in CHUNK-sized pieces.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 4 * 1024 * 1024
SYNC_ONE_BY_ONE = 64  # above this many new blobs per transaction, one os.sync() is cheaper
EMPTY_HASH = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class BlobRef:
    hash: str  # sha256 hex of the content
    size: int


class BlobWriter:
    """Streams bytes into a new blob; `commit()` makes it durable and returns its BlobRef.

    Large chunks are written to disk by a helper thread while the caller hashes them and goes
    back to receiving the next message (both release the GIL), so an upload uses two cores.
    At most QUEUE chunks wait, which keeps memory bounded."""

    QUEUE = 2
    BIG = 1024 * 1024  # chunks from this size on go through the helper thread

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="up-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _drain(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._file.write(data)
                except BaseException as exc:  # reported by the next write() or commit()
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if len(data) >= self.BIG:
            if self._queue is None:
                self._queue = queue.Queue(self.QUEUE)
                self._thread = threading.Thread(target=self._drain, daemon=True,
                                                name="localpachd-blob-writer")
                self._thread.start()
            self._queue.put(data)
        elif self._queue is not None:
            self._queue.put(data)  # keep the order once the helper thread is writing
        else:
            self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def write_from(self, src: BinaryIO) -> None:
        while chunk := src.read(CHUNK):
            self.write(chunk)

    def _join(self) -> None:
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        if self._error is not None:
            raise self._error

    def commit(self) -> BlobRef:
        """Move the blob into place. Its fsync is deferred: `Store.write()` calls
        `BlobStore.sync()` before committing metadata, so one sync covers a whole upload."""
        self._join()
        self._file.close()
        ref = BlobRef(self._hash.hexdigest(), self.size)
        self._store.adopt(self._tmp, ref.hash)
        return ref

    def abort(self) -> None:
        try:
            self._join()
        except BaseException:  # noqa: BLE001 (aborting anyway)
            pass
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class BlobStore:
    """The blob directory of one data dir. Thread-safe: writers never share files."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self._pending: list[Path] = []  # adopted but not yet synced
        self._overflow = False  # too many to fsync one by one: one global sync instead
        self._plock = threading.Lock()
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.iterdir():  # half-written uploads of a crashed process
            stale.unlink(missing_ok=True)
        self.put_bytes(b"")

    def path(self, h: str) -> Path:
        if len(h) != 64 or not all(c in "0123456789abcdef" for c in h):
            raise ValueError(f"not a blob hash: {h!r}")
        return self.root / h[:2] / h

    def has(self, h: str) -> bool:
        return self.path(h).exists()

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def adopt(self, tmp: Path, h: str) -> None:
        """Move a complete, fsynced temp file into place (or drop it if the blob exists)."""
        dest = self.path(h)
        if dest.exists():
            tmp.unlink(missing_ok=True)
            return
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
        with self._plock:
            if len(self._pending) < SYNC_ONE_BY_ONE:
                self._pending.append(dest)
            else:
                self._overflow = True

    def sync(self) -> None:
        """Make every blob written so far durable (power loss); a no-op when nothing is new.
        A few blobs are fsynced one by one (with their directories); many at once get one
        global sync. Process crashes (kill -9) need neither: the kernel keeps written data."""
        with self._plock:
            pending, overflow = self._pending, self._overflow
            self._pending, self._overflow = [], False
        if not self.fsync or not (pending or overflow):
            return
        if overflow:
            os.sync()
            return
        for path in [*pending, *{p.parent for p in pending}]:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def put_bytes(self, data: bytes) -> BlobRef:
        w = self.writer()
        w.write(data)
        return w.commit()

    def ingest(self, local: Path) -> BlobRef:
        """Copy a local file (e.g. a datum's output) into the store, streaming."""
        w = self.writer()
        try:
            with open(local, "rb") as src:
                w.write_from(src)
            return w.commit()
        except BaseException:
            w.abort()
            raise

    def collect(self, live: set[str]) -> tuple[int, int]:
        """Delete every blob whose hash is not in `live`; returns (blobs, bytes) freed. Only safe
        when no upload is in flight (the server calls it at start-up, before serving)."""
        freed = size = 0
        for sub in self.root.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for blob in sub.iterdir():
                if blob.name not in live and blob.name != EMPTY_HASH:
                    size += blob.stat().st_size
                    blob.unlink()
                    freed += 1
        return freed, size

    def open(self, h: str) -> BinaryIO:
        return open(self.path(h), "rb")

    def read_chunks(self, h: str, offset: int = 0, chunk: int = CHUNK) -> Iterator[bytes]:
        with self.open(h) as f:
            if offset:
                f.seek(offset)
            while data := f.read(chunk):
                yield data

    def materialize(self, h: str, dest: Path, link: bool = False) -> None:
        """Place a blob's content at `dest`: a copy, or with `link` a hard link (faster, but it
        shares the blob's inode, so only for readers that never write the file: root ignores the
        read-only mode and would corrupt the store)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(self.path(h), dest)
                return
            except OSError:
                pass
        shutil.copyfile(self.path(h), dest)

