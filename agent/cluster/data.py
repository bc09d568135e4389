"""Data declared in git, on the cluster side: what a repo holds that pachsync wrote, and writing
one commit per changed repo.

Called by `agent.sync` (observe, look up before a write) and `agent.cluster.apply` (write). The
record of what pachsync wrote is the manifest on its data commits (`agent.cluster.datamodel`).

Observe costs ONE ListCommit per repo with data declared when this source's data commit is the
newest user commit of the branch (the steady state: a no-op sync adds one RPC per such repo);
when someone committed after it, one DiffFile more says which of our files they changed.
`look_up` (only before a write) lists the declared places: one GlobFile per place.

A write is: StartCommit (inside the pipelines' transaction when there is one, so the data and
the pipeline changes form one commit set and every job runs once), one ModifyFile stream with
the deletes and puts (atomic: a failed stream adds nothing), then FinishCommit whose description
is the new manifest. The commit starts with a "pending" description; if the write fails it is
finished with a description that is not a manifest, so the next sync sees our previous manifest
and writes again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import grpc
from python_pachyderm.proto.v2.pfs import pfs_pb2

from agent.cluster.client import Connection, rpc_errors
from agent.cluster.datamodel import (
    DataWrite,
    LiveData,
    Manifest,
    parse_manifest,
    pending_description,
    pending_source,
)
from agent.errors import PachsyncError

MAX_COMMITS_SEARCHED = 1000  # user commits read back to find our newest data commit


def commit_ref(repo: str, project: str, branch: str, commit_id: str = "") -> Any:
    """A pfs Commit naming a branch head (or a commit id) in a project."""
    r = pfs_pb2.Repo(name=repo, type="user", project=pfs_pb2.Project(name=project))
    return pfs_pb2.Commit(repo=r, branch=pfs_pb2.Branch(repo=r, name=branch), id=commit_id)


def observe_data(conn: Connection, repos: Iterable[tuple[str, str, str]],
                 existing: frozenset[tuple[str, str]], is_ours: Callable[[str], bool]
                 ) -> dict[tuple[str, str], LiveData]:
    """LiveData per (project, repo) of `repos` ((repo, project, branch) with data declared);
    repos not in `existing` cost nothing (they are created empty by this run)."""
    out = {}
    for repo, project, branch in repos:
        if (project, repo) not in existing:
            out[(project, repo)] = LiveData(repo, project, branch, missing=True)
            continue
        out[(project, repo)] = _observe_one(conn, repo, project, branch, is_ours)
    return out


def _observe_one(conn: Connection, repo: str, project: str, branch: str,
                 is_ours: Callable[[str], bool]) -> LiveData:
    """The newest user commit first (ours in the steady state: done); else read back up to
    MAX_COMMITS_SEARCHED commits for our newest data commit and diff it with the head."""
    live = LiveData(repo, project, branch)
    try:
        newest = _commits(conn, repo, project, branch, 1)
        if not newest:
            return live
        found = _find_ours(live, newest, is_ours)
        if found.ours != found.head:
            found = _find_ours(live, _commits(conn, repo, project, branch,
                                              MAX_COMMITS_SEARCHED), is_ours)
    except PachsyncError as exc:
        if _not_found(exc):  # the branch has no commit yet
            return live
        raise
    if found.manifest is None or found.head == found.ours:
        return found
    changed, deleted = _changed_since(conn, found, found.manifest)
    return replace(found, changed=changed, deleted=deleted)


def _commits(conn: Connection, repo: str, project: str, branch: str, number: int) -> list[Any]:
    """The newest `number` user commits of the branch, newest first (one ListCommit)."""
    with rpc_errors(f"listing the commits of {repo}@{branch}", conn.target):
        return list(conn.client.list_commit(repo, to_commit=commit_ref(repo, project, branch),
                                            number=number, project_name=project))


def _find_ours(base: LiveData, commits: Sequence[Any], is_ours: Callable[[str], bool]
               ) -> LiveData:
    """`base` with the head, our newest finished data commit and its manifest, and an
    unfinished data commit of ours, found among `commits` (newest first)."""
    live = replace(base, head=commits[0].commit.id)
    open_commit = ""
    for searched, info in enumerate(commits, 1):
        description = str(info.description)
        if not info.HasField("finished"):
            if not open_commit and _ours_pending(description, is_ours):
                open_commit = info.commit.id
            continue
        manifest = parse_manifest(description)
        if manifest is not None and is_ours(manifest.source):
            return replace(live, ours=info.commit.id, manifest=manifest,
                           open_commit=open_commit, searched=searched)
    return replace(live, open_commit=open_commit, searched=len(commits))


def _ours_pending(description: str, is_ours: Callable[[str], bool]) -> bool:
    source = pending_source(description)
    return source is not None and is_ours(source)


def _not_found(exc: PachsyncError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.NOT_FOUND


def _changed_since(conn: Connection, live: LiveData, manifest: Manifest
                   ) -> tuple[frozenset[str], frozenset[str]]:
    """(changed, deleted): paths of the manifest whose content differs between our commit and
    the head (one DiffFile), i.e. that someone else changed or deleted since."""
    head = commit_ref(live.repo, live.project, live.branch, live.head)
    ours = commit_ref(live.repo, live.project, live.branch, live.ours)
    changed: set[str] = set()
    deleted: set[str] = set()
    with rpc_errors(f"comparing {live.repo}@{live.branch} with pachsync's last data commit",
                    conn.target):
        for resp in conn.client.diff_file(head, "/", ours, "/"):
            path = resp.old_file.file.path if resp.HasField("old_file") else \
                resp.new_file.file.path
            if path not in manifest.files:
                continue
            (changed if resp.HasField("new_file") else deleted).add(path)
    return frozenset(changed), frozenset(deleted)


def look_up(conn: Connection, live: LiveData, places: Sequence[str]) -> LiveData:
    """`live` with `listing`: the files at the head under each declared place (a file path,
    or a folder ending in /), one GlobFile each; nothing when the branch is empty."""
    if live.missing or not live.head:
        return replace(live, listing={})
    listing: dict[str, str] = {}
    at = commit_ref(live.repo, live.project, live.branch, live.head)
    for place in places:
        pattern = _escape(place.rstrip("/")) + ("/*" if place.endswith("/") else "")
        with rpc_errors(f"listing {place} in {live.repo}@{live.branch}", conn.target):
            try:
                for info in conn.client.glob_file(at, pattern or "/*"):
                    if info.file_type != pfs_pb2.FileType.DIR:
                        listing[info.file.path] = info.hash.hex()
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
    return replace(live, listing=listing)


def _escape(path: str) -> str:
    """A path as a glob matching exactly it."""
    return "".join("\\" + ch if ch in "*?[]{}()\\" else ch for ch in path)


# -- writing -------------------------------------------------------------------------------------
def start_commits(conn: Connection, writes: Sequence[DataWrite]) -> list[Any]:
    """StartCommit for every write (its unfinished commit when it has one); call inside the
    pipelines' transaction to make one commit set. Returns the commits to write into."""
    opened = []
    for w in writes:
        if w.into:
            opened.append(commit_ref(w.repo, w.project, w.branch, w.into))
            continue
        with rpc_errors(f"starting a data commit in {w.repo}@{w.branch}", conn.target):
            commit = conn.client.start_commit(w.repo, w.branch, description=pending_description(
                w.source), project_name=w.project)
        opened.append(_qualified(commit, w))
    return opened


def _qualified(commit: Any, w: DataWrite) -> Any:
    """The started commit with its repo and branch filled in (inside a transaction the answer
    may carry only the id)."""
    return commit_ref(w.repo, w.project, w.branch, str(getattr(commit, "id", "") or ""))


def commits_landed(conn: Connection, opened: Sequence[Any]) -> bool:
    """Whether the data commits a transaction started exist (its answer was lost)."""
    for commit in opened:
        try:
            with rpc_errors("looking for the data commits", conn.target):
                list(conn.client.inspect_commit(commit))
        except PachsyncError as exc:
            if _not_found(exc):
                return False
            raise
    return bool(opened)


def write_all(conn: Connection, writes: Sequence[DataWrite], opened: Sequence[Any]
              ) -> tuple[str, ...]:
    """Fill and finish every started commit; the repos written. On a failure every commit
    still open is finished without a manifest (so jobs are not left waiting and the next sync
    writes again), then the error is raised."""
    done: list[str] = []
    pending = list(zip(writes, opened, strict=True))
    try:
        while pending:
            w, commit = pending[0]
            _fill(conn, w, commit)
            with rpc_errors(f"finishing the data commit in {w.repo}@{w.branch}", conn.target):
                conn.client.finish_commit(commit, description=w.description)
            pending.pop(0)
            done.append(w.repo)
    except PachsyncError as exc:
        for _, commit in pending:
            with contextlib.suppress(PachsyncError, grpc.RpcError, ConnectionError):
                conn.client.finish_commit(commit, description=f"pachsync: data write failed: "
                                          f"{exc.message[:500]}")
        if done:
            exc.message += f" (data written before the failure: {', '.join(done)})"
            exc.args = (exc.message,)
        raise
    return tuple(done)


def _fill(conn: Connection, w: DataWrite, commit: Any) -> None:
    what = f"writing {len(w.puts)} file(s) and deleting {len(w.deletes)} in {w.repo}@{w.branch}"
    with rpc_errors(what, conn.target), conn.client.modify_file_client(commit) as mfc:
        for path in w.deletes:
            mfc.delete_file(path)
        for path, content in w.puts:
            mfc.put_file_from_bytes(path, content)
