"""The write session of one ModifyFile (or CreateFileSet) stream, and how it lands in a commit.

Used by `localpachd.pfs.modify` (which applies sessions in one store transaction) and
`localpachd.pfs.filesets`. Pachyderm's rule: an AddFile that no DeleteFile of the same stream
preceded APPENDS to whatever the file holds when the stream is applied (Pachyderm adds a file-set
layer and reads nothing), and a DeleteFile then AddFile replaces it. localpachd stores a file as
one blob, so an append is built ahead, outside the store's write lock, on the content read when
the stream wrote to the path, and checked when applied: if another stream changed the file
meanwhile, the append is re-based onto the new content (inside the lock when small, otherwise
outside it and the transaction retried), so concurrent streams never lose an append.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from localpachd.blobs import BlobRef, BlobStore, BlobWriter
from localpachd.paths import is_under, parent_dirs
from localpachd.pfs import files, model
from localpachd.pfs.files import Entry
from localpachd.store import Tx

INLINE_REBASE = 1 << 20  # bytes copied inside the write lock at most; above it: retry outside


@dataclass(frozen=True)
class Put:
    """One file a session writes. `ref` is its whole new content; an appending put (`appends`)
    was built on the file's content `base` (None: no such file), its own bytes follow it."""

    seq: int
    ref: BlobRef
    datum: str
    appends: bool
    base: BlobRef | None = None

    @property
    def own_offset(self) -> int:
        return self.base.size if self.base is not None else 0


class Stale(Exception):  # noqa: N818 (a signal between apply and its retry loop, not an error)
    """Appends too large to re-base inside the write lock: {path: the file's content now}."""

    def __init__(self, session: ModifySession, current: dict[str, BlobRef | None]) -> None:
        super().__init__(f"{len(current)} appended files changed meanwhile")
        self.session = session
        self.current = current

    def rebase(self) -> None:
        for path, ref in self.current.items():
            self.session.rebase(path, ref)


def _file_ref(tx: Tx, cid: int, path: str) -> BlobRef | None:
    row = tx.one("SELECT hash, size FROM files WHERE cid=? AND path=?", (cid, path))
    return BlobRef(row[0], row[1]) if row is not None else None


class ModifySession:
    """Collects one stream's operations; `apply` writes them in the caller's transaction.

    Blobs are streamed to disk as chunks arrive (bounded memory). Consecutive `add` calls on the
    same path extend one file (the client's 19 MiB chunking). Only the net effect is kept
    (deletes, then the puts that no later delete covered), so 10,000 small files cost a few
    dictionary operations each and two batched SQL statements.
    """

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._seq = 0
        self._puts: dict[str, Put] = {}
        self._deletes: dict[str, int] = {}
        self._put_dirs: set[str] = set()
        self._writer: BlobWriter | None = None
        self._wput = Put(0, BlobRef("", 0), "", False)  # path, mode and base of the writer
        self._wpath = ""

    def _start(self, path: str, datum: str, existing: Entry | None) -> tuple[Put, str | None]:
        """The mode of a new write to `path` and the blob its content continues (if any)."""
        known, mine = self.pending(path)
        if mine is not None:  # written earlier in this stream: continue that content
            prev = self._puts[path]
            return dataclasses.replace(prev, datum=datum), prev.ref.hash
        if known:  # deleted earlier in this stream: replaces whatever the file holds
            return Put(0, BlobRef("", 0), datum, appends=False), None
        if existing is None or existing.is_dir:
            return Put(0, BlobRef("", 0), datum, appends=True), None
        base = BlobRef(existing.hash, existing.size)
        return Put(0, base, datum, appends=True, base=base), existing.hash

    def add(self, path: str, data: bytes, datum: str, existing: Entry | None) -> None:
        """Write `data` to `path`: continue the current file, or start one that appends to the
        session's own content, to nothing (after a delete), or to `existing` (the commit's)."""
        if self._writer is None or self._wpath != path:
            self.flush()
            put, prefix = self._start(path, datum, existing)
            self._writer = self.blobs.writer()
            self._wpath, self._wput = path, put
            if prefix is not None:
                with self.blobs.open(prefix) as f:
                    self._writer.write_from(f)
        if data:
            self._writer.write(data)

    def append_blob(self, path: str, ref: BlobRef, datum: str, existing: Entry | None) -> None:
        """Append a whole stored blob (CopyFile with append); no copy when nothing precedes it."""
        self.flush()
        put, prefix = self._start(path, datum, existing)
        if prefix is None:
            self._put(path, dataclasses.replace(put, ref=ref))
            return
        self.add(path, b"", datum, existing)
        with self.blobs.open(ref.hash) as f:
            while chunk := f.read(4 * 1024 * 1024):
                self.add(path, chunk, datum, None)
        self.flush()

    def current(self, path: str) -> bool:
        return self._writer is not None and self._wpath == path

    def flush(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._put(self._wpath, dataclasses.replace(self._wput, ref=writer.commit()))

    def _put(self, path: str, put: Put) -> None:
        self._seq += 1
        self._puts[path] = dataclasses.replace(put, seq=self._seq)
        self._put_dirs.update(parent_dirs(path))

    def put(self, path: str, ref: BlobRef, datum: str) -> None:
        """Replace `path` with a stored blob (CopyFile without append)."""
        self.flush()
        self._put(path, Put(0, ref, datum, appends=False))

    def delete(self, path: str) -> None:
        self.flush()
        self._seq += 1
        self._deletes[path] = self._seq
        self._puts.pop(path, None)
        if path == "/" or path in self._put_dirs:  # a directory with earlier puts under it
            for p in [p for p in self._puts if is_under(p, path)]:
                del self._puts[p]

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def _deleted_at(self, path: str) -> int:
        return max(self._deletes.get(d, 0) for d in ("/", *parent_dirs(path), path))

    def pending(self, path: str) -> tuple[bool, Entry | None]:
        """The session's own view of a file: (known, entry); unknown means read the commit."""
        put = self._puts.get(path)
        deleted = self._deleted_at(path)
        if put is not None and put.seq > deleted:
            return True, Entry(path, False, put.ref.size, put.ref.hash, put.datum)
        return (True, None) if deleted else (False, None)

    def net_effect(self) -> tuple[list[str], dict[str, tuple[BlobRef, str]]]:
        """(paths deleted, {path: (blob, datum)} put): deletes apply first, then puts."""
        self.flush()
        return list(self._deletes), {p: (put.ref, put.datum) for p, put in self._puts.items()}

    def rebase(self, path: str, current: BlobRef | None) -> None:
        """Rebuild an appending put on the file's content now: `current` + its own bytes."""
        put = self._puts[path]
        writer = self.blobs.writer()
        try:
            if current is not None:
                with self.blobs.open(current.hash) as f:
                    writer.write_from(f)
            with self.blobs.open(put.ref.hash) as f:
                f.seek(put.own_offset)
                writer.write_from(f)
            ref = writer.commit()
        except BaseException:
            writer.abort()
            raise
        self._puts[path] = dataclasses.replace(put, ref=ref, base=current)

    def apply(self, tx: Tx, commit: model.Commit, inline_rebase: int = INLINE_REBASE) -> None:
        """Write the net effect into an open commit. Appends whose file changed since they were
        built are re-based here if that copies at most `inline_rebase` bytes; otherwise `Stale`
        is raised before anything is written (re-base outside the lock, then retry)."""
        self.flush()
        stale = {p: cur for p, put in self._puts.items() if put.appends
                 and (cur := _file_ref(tx, commit.cid, p)) != put.base}
        big = {p: cur for p, cur in stale.items()
               if (cur.size if cur else 0) + self._puts[p].ref.size > inline_rebase}
        if big:
            raise Stale(self, big)
        for path, cur in stale.items():
            self.rebase(path, cur)
        files.apply_changes(tx, commit, *self.net_effect())
