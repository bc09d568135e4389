"""File trees of commits: lookups, listings, and writing a net set of changes into a commit.

Used by the pfs servicer, `session` (a ModifyFile stream's changes) and the pps/jobs modules
(`replace_tree`, `tree`, `write_entries` to fill an output commit). Directories are implicit (a
directory exists while a file lies under it), as in Pachyderm 2.x; directory paths are reported
with a trailing `/`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from localpachd.blobs import BlobRef
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
