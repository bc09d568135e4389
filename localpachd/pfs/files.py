"""File trees of commits: lookups, listings, and the ModifyFile write session.

Used by the pfs servicer and by the pps/jobs modules (`replace_tree`, `tree`, `write_entries` to
fill an output commit). Directories are implicit (a directory exists while a file lies under it),
as in Pachyderm 2.x; directory paths are reported with a trailing `/`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from localpachd.blobs import BlobRef, BlobStore, BlobWriter
from localpachd.errors import InvalidArgument
from localpachd.paths import clean_path, is_under, parent_dirs
from localpachd.pfs import model
from localpachd.store import Tx


@dataclass(frozen=True)
class Entry:
    """A file (`is_dir` False, `hash` = blob sha256) or a directory (hash over its children)."""

    path: str  # cleaned, no trailing slash ("/" for the root)
    is_dir: bool
    size: int
    hash: str
    datum: str = ""

    @property
    def display(self) -> str:
        return self.path if not self.is_dir or self.path == "/" else self.path + "/"


def _range(directory: str) -> tuple[str, str]:
    """Bounds of every path strictly under `directory` in byte order ('/'+1 == '0')."""
    prefix = "/" if directory == "/" else directory + "/"
    return prefix, prefix[:-1] + "0"


def files_under(tx: Tx, cid: int, directory: str = "/") -> Iterator[Entry]:
    lo, hi = _range(directory)
    for r in tx.conn.execute("SELECT path, hash, size, datum FROM files WHERE cid=? AND path>=?"
                             " AND path<? ORDER BY path", (cid, lo, hi)):
        yield Entry(r[0], False, r[2], r[1], r[3])


def tree(tx: Tx, cid: int) -> list[Entry]:
    """Every file of a commit, sorted by path (files only)."""
    return list(files_under(tx, cid, "/"))


def _dir_entry(path: str, files: list[Entry]) -> Entry:
    h = hashlib.sha256()
    for f in files:
        h.update(f.path.encode() + b"\0" + f.hash.encode())
    return Entry(path, True, sum(f.size for f in files), h.hexdigest())


def lookup(tx: Tx, cid: int, path: str) -> Entry | None:
    row = tx.one("SELECT path, hash, size, datum FROM files WHERE cid=? AND path=?", (cid, path))
    if row is not None:
        return Entry(row[0], False, row[2], row[1], row[3])
    under = list(files_under(tx, cid, path))
    if under or path == "/":
        return _dir_entry(path, under)
    return None


def children(tx: Tx, cid: int, directory: str) -> list[Entry]:
    """Direct children of a directory (files and subdirectories), sorted by path."""
    groups: dict[str, list[Entry]] = {}
    base = "" if directory == "/" else directory
    for f in files_under(tx, cid, directory):
        name = f.path[len(base) + 1:].split("/", 1)[0]
        groups.setdefault(base + "/" + name, []).append(f)
    out = []
    for path, fs in sorted(groups.items()):
        out.append(fs[0] if len(fs) == 1 and fs[0].path == path else _dir_entry(path, fs))
    return out


def walk(tx: Tx, cid: int, path: str) -> list[Entry]:
    """`path` itself then everything below it, pre-order, directories included."""
    top = lookup(tx, cid, path)
    if top is None:
        return []
    if not top.is_dir:
        return [top]
    files = list(files_under(tx, cid, path))
    dirs: dict[str, list[Entry]] = {}
    for f in files:
        segs = f.path.split("/")
        for i in range(2, len(segs)):
            d = "/".join(segs[:i])
            if is_under(d, path) and d != path:
                dirs.setdefault(d, []).append(f)
    entries = [_dir_entry(d, fs) for d, fs in dirs.items()] + files
    entries.sort(key=lambda e: e.path)
    return [top, *entries]


def all_entries(tx: Tx, cid: int) -> list[Entry]:
    """Every file and directory of a commit (root excluded), sorted by path."""
    return walk(tx, cid, "/")[1:]


def write_entries(tx: Tx, cid: int, puts: Iterable[tuple[str, BlobRef, str]]) -> None:
    """Add or overwrite files (path, blob, datum tag) in an open commit."""
    for path, ref, datum in puts:
        tx.x("INSERT OR REPLACE INTO files VALUES(?,?,?,?,?)",
             (cid, clean_path(path), ref.hash, ref.size, datum))
    model.mark_modified(tx, cid)


def delete_path(tx: Tx, cid: int, path: str) -> None:
    """Delete a file, or a directory and everything under it (root: everything)."""
    lo, hi = _range(path)
    tx.x("DELETE FROM files WHERE cid=? AND (path=? OR (path>=? AND path<?))", (cid, path, lo, hi))
    model.mark_modified(tx, cid)


def replace_tree(tx: Tx, cid: int, entries: Iterable[tuple[str, BlobRef, str]]) -> None:
    """Make an open commit's tree exactly `entries` (used to finish pipeline output commits)."""
    tx.x("DELETE FROM files WHERE cid=?", (cid,))
    write_entries(tx, cid, entries)


class ModifySession:
    """Collects one ModifyFile stream's operations; `apply` writes them in one transaction.

    Blobs are streamed to disk as chunks arrive (bounded memory). Consecutive `add` calls on the
    same path extend one file, and an `add` without a preceding delete appends to the existing
    content (this is how Pachyderm 2.x and the client's 19 MiB chunking work). Only the net
    effect is kept (deletes, then the puts that no later delete covered), so 10,000 small files
    cost a few dictionary operations each and two batched SQL statements.
    """

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._seq = 0
        self._puts: dict[str, tuple[int, BlobRef, str]] = {}
        self._deletes: dict[str, int] = {}
        self._put_dirs: set[str] = set()
        self._writer: BlobWriter | None = None
        self._wpath = ""
        self._wdatum = ""

    def add(self, path: str, data: bytes, datum: str, existing: Entry | None) -> None:
        if self._writer is None or self._wpath != path:
            self.flush()
            self._writer = self.blobs.writer()
            self._wpath, self._wdatum = path, datum
            if existing is not None and not existing.is_dir:
                with self.blobs.open(existing.hash) as f:
                    self._writer.write_from(f)
        if data:
            self._writer.write(data)

    def current(self, path: str) -> bool:
        return self._writer is not None and self._wpath == path

    def flush(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._put(self._wpath, writer.commit(), self._wdatum)

    def _put(self, path: str, ref: BlobRef, datum: str) -> None:
        self._seq += 1
        self._puts[path] = (self._seq, ref, datum)
        self._put_dirs.update(parent_dirs(path))

    def put(self, path: str, ref: BlobRef, datum: str) -> None:
        self.flush()
        self._put(path, ref, datum)

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

    def pending(self, path: str) -> tuple[bool, Entry | None]:
        """The session's own view of a file: (known, entry); unknown means read the commit."""
        put = self._puts.get(path)
        deleted = max((self._deletes.get(d, 0) for d in ("/", *parent_dirs(path), path)),
                      default=0)
        if put is not None and put[0] > deleted:
            return True, Entry(path, False, put[1].size, put[1].hash, put[2])
        return (True, None) if deleted else (False, None)

    def net_effect(self) -> tuple[list[str], dict[str, tuple[BlobRef, str]]]:
        """(paths deleted, {path: (blob, datum)} put): deletes apply first, then puts."""
        self.flush()
        return list(self._deletes), {p: (ref, datum) for p, (_, ref, datum) in self._puts.items()}

    def apply(self, tx: Tx, commit: model.Commit) -> None:
        deletes, puts = self.net_effect()
        apply_changes(tx, commit, deletes, puts)


def apply_changes(tx: Tx, commit: model.Commit, deletes: Iterable[str],
                  puts: dict[str, tuple[BlobRef, str]]) -> None:
    """Delete paths (files or whole directories), then write files, into an open commit."""
    model.require_open(commit)
    cid = commit.cid
    tx.conn.executemany("DELETE FROM files WHERE cid=? AND (path=? OR (path>=? AND path<?))",
                        [(cid, path, *_range(path)) for path in deletes])
    tx.conn.executemany("INSERT OR REPLACE INTO files VALUES(?,?,?,?,?)",
                        [(cid, p, ref.hash, ref.size, datum) for p, (ref, datum) in puts.items()])
    check_file_dir_conflicts(tx, commit, puts)
    model.mark_modified(tx, cid)


def check_file_dir_conflicts(tx: Tx, commit: model.Commit, puts: Iterable[str]) -> None:
    """Refuse a tree where a path is both a file and a directory (`/a` and `/a/b`)."""
    paths = list(puts)
    parents = sorted({d for p in paths for d in parent_dirs(p)})
    for i in range(0, len(parents), 500):
        chunk = parents[i:i + 500]
        marks = ",".join("?" * len(chunk))
        row = tx.one(f"SELECT path FROM files WHERE cid=? AND path IN ({marks}) LIMIT 1",
                     (commit.cid, *chunk))
        if row is not None:
            raise _conflict(commit, row["path"])
    for p in paths:
        lo, hi = _range(p)
        if tx.one("SELECT 1 FROM files WHERE cid=? AND path>=? AND path<? LIMIT 1",
                  (commit.cid, lo, hi)) is not None:
            raise _conflict(commit, p)


def _conflict(commit: model.Commit, path: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path} would be both a file and a directory in commit "
        f"{commit.project}/{commit.repo}@{commit.id}: delete one of them first")
