"""Protobuf <-> domain conversions for the pfs servicer (pfs_v2 messages of python-pachyderm)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from google.protobuf import timestamp_pb2
from python_pachyderm.proto.v2.pfs import pfs_pb2

from localpachd import wire
from localpachd.pfs import model
from localpachd.pfs.files import Entry
from localpachd.pfs.model import BranchKey, Commit
from localpachd.store import Tx

ORIGINS = {"USER": pfs_pb2.USER, "AUTO": pfs_pb2.AUTO, "FSCK": pfs_pb2.FSCK}
ORIGIN_NAMES = {v: k for k, v in ORIGINS.items()}


def ts(t: float | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(int(t * 1e9))
    return out


def project_of(p: pfs_pb2.Project) -> str:
    return model.project_name(p.name if p is not None else "")


def repo_ref(repo: pfs_pb2.Repo) -> tuple[str, str]:
    return project_of(repo.project), repo.name


def repo_pb(project: str, name: str, repo_type: str = "user") -> pfs_pb2.Repo:
    return pfs_pb2.Repo(name=name, type=repo_type or "user",
                        project=pfs_pb2.Project(name=project))


def branch_key(b: pfs_pb2.Branch) -> BranchKey:
    project, repo = repo_ref(b.repo)
    return BranchKey(project, repo, b.name)


def branch_pb(b: BranchKey) -> pfs_pb2.Branch:
    return pfs_pb2.Branch(repo=repo_pb(b.project, b.repo), name=b.name)


def commit_ref(c: pfs_pb2.Commit) -> tuple[str, str, str, str]:
    """(project, repo, branch, id) of a Commit message: the repo lives in `branch.repo` (what the
    client sends) or, for older callers, in `commit.repo`."""
    repo_msg = c.branch.repo if c.branch.repo.name else c.repo
    project, repo = repo_ref(repo_msg)
    return project, repo, c.branch.name, c.id


def resolve(tx: Tx, c: pfs_pb2.Commit) -> Commit:
    project, repo, branch, cid = commit_ref(c)
    return model.resolve_commit(tx, project, repo, branch, cid)


def resolve_read(tx: Tx, c: pfs_pb2.Commit) -> Commit:
    """The commit a read names (InspectCommit, file reads, DiffFile), resolved as Pachyderm
    2.7's resolveCommit does: a missing repo reports `branch "b" not found in repo p/r` (or the
    commit ID not found), which python-pachyderm's `path_exists` turns into its ValueError."""
    project, repo, branch, cid = commit_ref(c)
    return model.resolve_commit(tx, project, repo, branch, cid, check_repo=False)


def commit_pb(c: Commit) -> pfs_pb2.Commit:
    repo = repo_pb(c.project, c.repo)
    return pfs_pb2.Commit(repo=repo, id=c.id, branch=pfs_pb2.Branch(repo=repo, name=c.branch or ""))


def commit_info(tx: Tx, c: Commit) -> pfs_pb2.CommitInfo:
    size = c.size if c.is_finished else model.tree_size(tx, c.cid)
    info = pfs_pb2.CommitInfo(
        commit=commit_pb(c), origin=pfs_pb2.CommitOrigin(kind=ORIGINS.get(c.origin, 0)),
        description=c.description, started=ts(c.started), finishing=ts(c.finishing),
        finished=ts(c.finished), error=c.error, size_bytes_upper_bound=size,
        details=pfs_pb2.CommitInfo.Details(size_bytes=size))
    if c.parent_cid is not None:
        info.parent_commit.CopyFrom(commit_pb(model.get_commit(tx, c.parent_cid)))
    info.child_commits.extend(commit_pb(k) for k in model.children(tx, c.cid))
    info.direct_provenance.extend(commit_pb(p) for p in model.commit_provenance(tx, c.cid))
    return info


def branch_info(tx: Tx, b: BranchKey) -> pfs_pb2.BranchInfo:
    info = pfs_pb2.BranchInfo(branch=branch_pb(b))
    head = model.branch_head(tx, b)
    if head is not None:
        info.head.CopyFrom(commit_pb(head))
    info.direct_provenance.extend(branch_pb(x) for x in model.direct_provenance(tx, b))
    info.provenance.extend(branch_pb(x) for x in model.closure(tx, b, up=True))
    info.subvenance.extend(branch_pb(x) for x in model.closure(tx, b, up=False))
    return info


def repo_infos(tx: Tx, rows: list[Any]) -> list[pfs_pb2.RepoInfo]:
    """RepoInfo of each `repos` row in at most three queries whatever their number (sizes of the
    `master` heads, branches, and the file sizes of open heads)."""
    only = (rows[0]["project"], rows[0]["name"]) if len(rows) == 1 else None
    where, params = (" AND b.project=? AND b.repo=?", only) if only else ("", ())
    sizes: dict[tuple[str, str], int] = {}
    open_heads: dict[int, tuple[str, str]] = {}
    for h in tx.q("SELECT b.project, b.repo, c.cid, c.finished, c.size FROM branches b JOIN "
                  f"commits c ON c.cid=b.head_cid WHERE b.name='master'{where}", params):
        if h["finished"] is None:
            open_heads[h["cid"]] = (h["project"], h["repo"])
        else:
            sizes[(h["project"], h["repo"])] = int(h["size"])
    if open_heads:  # an open head's size is that of its current files (model.repo_size)
        marks = ",".join("?" * len(open_heads))
        for t in tx.q(f"SELECT cid, COALESCE(SUM(size), 0) FROM files WHERE cid IN ({marks}) "
                      "GROUP BY cid", tuple(open_heads)):  # fmt: skip
            sizes[open_heads[t[0]]] = int(t[1])
    branches: dict[tuple[str, str], list[str]] = {}
    for b in tx.q(f"SELECT b.project, b.repo, b.name FROM branches b WHERE 1{where} "
                  "ORDER BY b.seq DESC", params):  # fmt: skip
        branches.setdefault((b[0], b[1]), []).append(b[2])
    return [_repo_info(r["project"], r["name"], r["type"], r["created"], r["description"],
                       sizes.get((r["project"], r["name"]), 0),
                       tuple(branches.get((r["project"], r["name"]), ())))
            for r in rows]  # fmt: skip


@lru_cache(maxsize=2048)
def _repo_info(project: str, name: str, repo_type: str, created: float, description: str,
               size: int, branches: tuple[str, ...]) -> pfs_pb2.RepoInfo:  # fmt: skip
    """Memoised on everything it shows (pure-Python protobuf is slow to build), so a change
    is a new key; the message is shared between calls and must not be modified."""
    info = pfs_pb2.RepoInfo(repo=repo_pb(project, name, repo_type), created=ts(created),
                            size_bytes_upper_bound=size, description=description,
                            details=pfs_pb2.RepoInfo.Details(size_bytes=size))  # fmt: skip
    info.branches.extend(branch_pb(BranchKey(project, name, b)) for b in branches)
    return wire.remember(info)  # serialised once, too


def file_info(c: Commit, e: Entry) -> pfs_pb2.FileInfo:
    return pfs_pb2.FileInfo(
        file=pfs_pb2.File(commit=commit_pb(c), path=e.display, datum=e.datum),
        file_type=pfs_pb2.DIR if e.is_dir else pfs_pb2.FILE,
        committed=ts(c.finished), size_bytes=e.size, hash=bytes.fromhex(e.hash))
