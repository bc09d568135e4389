"""DiffFile and Fsck for the pfs servicer: comparisons of trees and store consistency checks."""

from __future__ import annotations

from typing import Any

from python_pachyderm.proto.v2.pfs import pfs_pb2

from localpachd.blobs import BlobStore
from localpachd.paths import clean_path
from localpachd.pfs import files, model
from localpachd.pfs.convert import commit_pb, file_info, resolve, resolve_read
from localpachd.store import Tx


def _entries(tx: Tx, cid: int, path: str, shallow: bool) -> dict[str, files.Entry]:
    top = files.lookup(tx, cid, path)
    if top is None:
        return {}
    if not top.is_dir:
        return {top.path: top}
    found = files.children(tx, cid, path) if shallow else files.walk(tx, cid, path)[1:]
    return {e.path: e for e in found}


def diff(tx: Tx, req: Any) -> list[pfs_pb2.DiffFileResponse]:
    """Changed paths under new_file's path versus old_file (default: the new commit's parent)."""
    new_c = resolve_read(tx, req.new_file.commit)
    new_path = clean_path(req.new_file.path)
    if req.HasField("old_file") and (req.old_file.commit.id or req.old_file.commit.branch.name):
        old_c: model.Commit | None = resolve_read(tx, req.old_file.commit)
        old_path = clean_path(req.old_file.path)
    else:
        old_c = model.get_commit(tx, new_c.parent_cid) if new_c.parent_cid else None
        old_path = new_path
    new = _entries(tx, new_c.cid, new_path, req.shallow)
    old = _entries(tx, old_c.cid, old_path, req.shallow) if old_c else {}
    out = []
    for path in sorted(set(new) | set(old)):
        n, o = new.get(path), old.get(path)
        if n is not None and o is not None and n.hash == o.hash and n.is_dir == o.is_dir:
            continue
        resp = pfs_pb2.DiffFileResponse()
        if n is not None:
            resp.new_file.CopyFrom(file_info(new_c, n))
        if o is not None and old_c is not None:
            resp.old_file.CopyFrom(file_info(old_c, o))
        out.append(resp)
    return out


def fsck(tx: Tx, blobs: BlobStore) -> list[str]:
    """Every inconsistency found: missing or truncated blobs, dangling parents and heads."""
    problems = []
    for r in tx.q("SELECT DISTINCT hash, size FROM files"):
        p = blobs.path(r["hash"])
        if not p.exists():
            problems.append(f"blob {r['hash']} is missing")
        elif p.stat().st_size != r["size"]:
            problems.append(f"blob {r['hash']} has size {p.stat().st_size}, expected {r['size']}")
    for r in tx.q("SELECT c.project, c.repo, c.id FROM commits c LEFT JOIN commits p "
                  "ON p.cid=c.parent_cid WHERE c.parent_cid IS NOT NULL AND p.cid IS NULL"):
        problems.append(f"commit {r['project']}/{r['repo']}@{r['id']} has a missing parent")
    for r in tx.q("SELECT b.project, b.repo, b.name FROM branches b LEFT JOIN commits c "
                  "ON c.cid=b.head_cid WHERE b.head_cid IS NOT NULL AND c.cid IS NULL"):
        problems.append(f"branch {r['name']} of {r['project']}/{r['repo']} has a missing head")
    return problems


def find_commits(tx: Tx, req: Any) -> list[pfs_pb2.FindCommitsResponse]:
    """Walk back from `start` and report each commit that changed `file_path` (added, modified
    or deleted it, or anything under it), at most `limit` of them, then the last one searched."""
    path = clean_path(req.file_path)
    c: model.Commit | None = resolve(tx, req.start)
    out: list[pfs_pb2.FindCommitsResponse] = []
    searched, last = 0, c
    found = 0
    while c is not None and (req.limit == 0 or found < req.limit):
        searched += 1
        last = c
        parent = model.get_commit(tx, c.parent_cid) if c.parent_cid is not None else None
        now = files.lookup(tx, c.cid, path)
        before = files.lookup(tx, parent.cid, path) if parent is not None else None
        if (now.hash if now else None) != (before.hash if before else None):
            found += 1
            out.append(pfs_pb2.FindCommitsResponse(found_commit=commit_pb(c),
                                                   commits_searched=searched))
        c = parent
    if last is not None:
        out.append(pfs_pb2.FindCommitsResponse(last_searched_commit=commit_pb(last),
                                               commits_searched=searched))
    return out
