"""The pfs_v2.API servicer: thin translation between python-pachyderm's messages and the model.

Registered by `localpachd.pfs.register`. Transactional methods (CreateRepo, DeleteRepo,
StartCommit, FinishCommit, SquashCommitSet, CreateBranch, DeleteBranch) live in `ops` as
`apply_*(ctx, tx, request)`; file reads are the `reading.FileReads` mixin; file sets, the cache
and storage checks the `filesets.FileSetMethods` mixin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from python_pachyderm.proto.v2.pfs import pfs_pb2, pfs_pb2_grpc

from localpachd import errors, waits, wire
from localpachd.context import fill_unimplemented
from localpachd.pfs import files, filesets, model
from localpachd.pfs.convert import (
    ORIGIN_NAMES,
    branch_info,
    branch_key,
    commit_info,
    project_of,
    repo_infos,
    repo_ref,
    resolve,
    resolve_read,
)
from localpachd.pfs.filesets import FileSetMethods
from localpachd.pfs.model import BranchKey, Commit
from localpachd.pfs.ops import (
    TXN_METHODS,
    apply_create_branch,
    apply_create_repo,
    apply_delete_branch,
    apply_delete_repo,
    apply_drop_commit_set,
    apply_finish_commit,
    apply_squash_commit_set,
    apply_start_commit,
    commit_set,
    has_commit,
)
from localpachd.pfs.reading import FileReads
from localpachd.store import Tx

Ctx = Any
E = empty_pb2.Empty


CANCEL_GRACE = 0.005  # seconds


def _not_cancelled(context: Any) -> bool:
    """True if the client finished its request stream, False if it cancelled or vanished.

    grpc-python ends the request iterator the same way for both and learns of a cancellation
    from a second event that may be handled a moment later, so give that event a few
    milliseconds (woken at once when it arrives) before trusting `is_active()`."""
    cond = getattr(getattr(context, "_state", None), "condition", None)
    if cond is None:  # grpc internals changed: plain wait
        time.sleep(CANCEL_GRACE)
        return bool(context.is_active())
    with cond:
        if context.is_active():
            cond.wait(CANCEL_GRACE)
        return bool(context.is_active())


def _passes_origin(c: Commit, all_kinds: bool, origin_kind: int) -> bool:
    """Pachyderm's filter: `all` passes everything, else an origin kind given must match."""
    return all_kinds or not origin_kind or c.origin == ORIGIN_NAMES.get(origin_kind, "")


def _state_reached(tx: Tx, c: Commit, state: int) -> bool:
    if state in (pfs_pb2.COMMIT_STATE_UNKNOWN, pfs_pb2.STARTED):
        return True
    if state == pfs_pb2.READY:
        return all(p.is_finished for p in model.commit_provenance(tx, c.cid))
    return c.is_finished


class PfsServicer(FileReads, FileSetMethods, pfs_pb2_grpc.APIServicer):  # type: ignore[misc]
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def _write(self, fn: Any, req: Any) -> Any:
        with self.store.write() as tx:
            out = fn(self.ctx, tx, req)
        return out if out is not None else E()

    # ------------------------------------------------------------ projects

    def CreateProject(self, req: Any, context: Any) -> Any:
        with self.store.write() as tx:
            model.create_project(tx, req.project.name, req.description, req.update)
        return E()

    def _project_info(self, tx: Tx, name: str) -> pfs_pb2.ProjectInfo:
        from localpachd.pfs.convert import ts

        row = tx.one("SELECT * FROM projects WHERE name=?", (name,))
        if row is None:
            raise errors.project_not_found(name)
        return pfs_pb2.ProjectInfo(project=pfs_pb2.Project(name=name),
                                   description=row["description"], created_at=ts(row["created"]))

    def InspectProject(self, req: Any, context: Any) -> Any:
        with self.store.read() as tx:
            return self._project_info(tx, project_of(req.project))

    def ListProject(self, req: Any, context: Any) -> Iterator[Any]:
        with self.store.read() as tx:
            out = [self._project_info(tx, r["name"])
                   for r in tx.q("SELECT name FROM projects ORDER BY created DESC, name")]
        yield from out

    def DeleteProject(self, req: Any, context: Any) -> Any:
        with self.store.write() as tx:
            model.delete_project(tx, project_of(req.project), req.force)
        return E()

    # ------------------------------------------------------------ repos

    def CreateRepo(self, req: Any, context: Any) -> Any:
        return self._write(apply_create_repo, req)

    def InspectRepo(self, req: Any, context: Any) -> Any:
        project, name = repo_ref(req.repo)
        with self.store.read() as tx:
            model.require_repo(tx, project, name)
            row = tx.one("SELECT * FROM repos WHERE project=? AND name=?", (project, name))
            return repo_infos(tx, [row])[0]

    def ListRepo(self, req: Any, context: Any) -> Iterator[Any]:
        projects = {project_of(p) for p in req.projects}
        with self.store.read() as tx:
            rows = tx.q("SELECT * FROM repos ORDER BY created DESC, name")
            out = repo_infos(tx, [r for r in rows
                                  if (not req.type or r["type"] == req.type)
                                  and (not projects or r["project"] in projects)])
        yield from out

    def DeleteRepo(self, req: Any, context: Any) -> Any:
        return self._write(apply_delete_repo, req)

    def DeleteRepos(self, req: Any, context: Any) -> Any:
        projects = {project_of(p) for p in req.projects}
        if not projects and not req.all:
            raise errors.InvalidArgument("DeleteRepos needs projects or all")
        deleted = []
        with self.store.write() as tx:
            rows = tx.q("SELECT project, name, type FROM repos ORDER BY created DESC")
            for r in rows:
                if req.all or r["project"] in projects:
                    if not req.force:
                        for guard in getattr(self.ctx, "delete_repo_guards", ()):
                            guard(tx, r["project"], r["name"])
                    model.delete_repo(tx, r["project"], r["name"], force=True)
                    deleted.append(pfs_pb2.Repo(name=r["name"], type=r["type"],
                                                project=pfs_pb2.Project(name=r["project"])))
        return pfs_pb2.DeleteReposResponse(repos=deleted)

    def DeleteAll(self, req: Any, context: Any) -> Any:
        with self.store.write() as tx:
            model.delete_all(tx)
        return E()

    # ------------------------------------------------------------ commits

    def StartCommit(self, req: Any, context: Any) -> Any:
        return self._write(apply_start_commit, req)

    def FinishCommit(self, req: Any, context: Any) -> Any:
        return self._write(apply_finish_commit, req)

    def ClearCommit(self, req: Any, context: Any) -> Any:
        with self.store.write() as tx:
            c = resolve(tx, req.commit)
            model.require_open(c)
            files.delete_path(tx, c.cid, "/")
        return E()

    def InspectCommit(self, req: Any, context: Any) -> Any:
        with self.store.read() as tx:
            cid = resolve_read(tx, req.commit).cid

        def check(tx: Tx) -> Any:
            c = model.get_commit(tx, cid)
            return commit_info(tx, c) if _state_reached(tx, c, req.wait) else None

        info = waits.wait_until(self.ctx, context, "InspectCommit", check)
        if info is None:
            raise errors.Aborted("InspectCommit: the call ended before the commit was ready")
        return info

    def ListCommit(self, req: Any, context: Any) -> Iterator[Any]:
        project, repo = repo_ref(req.repo)
        with self.store.read() as tx:
            model.require_repo(tx, project, repo)
            commits = self._list_commits(tx, project, repo, req)
            out = [commit_info(tx, c) for c in commits]
        yield from out

    def _list_commits(self, tx: Tx, project: str, repo: str, req: Any) -> list[Commit]:
        has_from = req.HasField("from") and has_commit(getattr(req, "from"))
        has_to = req.HasField("to") and has_commit(req.to)
        if req.reverse and (has_from or has_to):
            raise errors.InvalidArgument("cannot use 'Reverse' while also using 'From' or 'To'")
        stop = resolve(tx, getattr(req, "from")).cid if has_from else None
        if has_to:
            chain: list[Commit] = []
            c: Commit | None = resolve(tx, req.to)
            while c is not None and c.cid != stop:
                chain.append(c)
                c = model.get_commit(tx, c.parent_cid) if c.parent_cid is not None else None
        else:
            rows = tx.q(f"SELECT {model.COMMIT_COLS} FROM commits WHERE project=? AND repo=? "
                        "ORDER BY cid DESC", (project, repo))
            chain = [model._commit(r) for r in rows if stop is None or r["cid"] > stop]
        chain = [c for c in chain if _passes_origin(c, req.all, req.origin_kind)]
        if req.reverse:
            chain = chain[::-1]
        if req.HasField("started_time"):  # Pachyderm: started before it (after it, reversed)
            t = req.started_time.ToNanoseconds() / 1e9
            chain = [c for c in chain if (c.started > t if req.reverse else c.started < t)]
        return chain[: req.number] if req.number > 0 else chain

    def SubscribeCommit(self, req: Any, context: Any) -> Iterator[Any]:
        project, repo = repo_ref(req.repo)
        with self.store.read() as tx:
            model.require_repo(tx, project, repo)
            start = 0  # the `from` commit itself is not sent (as Pachyderm)
            if req.HasField("from") and has_commit(getattr(req, "from")):
                start = resolve(tx, getattr(req, "from")).cid + 1
        sent: set[int] = set()
        while context.is_active() and not self.ctx.stopping.is_set():
            seen = self.store.events.version
            with self.store.read() as tx:
                rows = tx.q(f"SELECT {model.COMMIT_COLS} FROM commits WHERE project=? AND "
                            "repo=? AND cid>=? ORDER BY cid", (project, repo, start))
                ready = []
                for r in rows:
                    c = model._commit(r)
                    if c.cid in sent or (req.branch and c.branch != req.branch):
                        continue
                    if not _passes_origin(c, req.all, req.origin_kind):
                        continue
                    if not _state_reached(tx, c, req.state):
                        continue
                    sent.add(c.cid)
                    ready.append(commit_info(tx, c))
            yield from ready
            self.store.events.wait_change(seen, 1.0)

    def InspectCommitSet(self, req: Any, context: Any) -> Iterator[Any]:
        cs = req.commit_set.id
        with self.store.read() as tx:
            commit_set(tx, cs)

        def check(tx: Tx) -> Any:
            commits = model.commits_in_set(tx, cs)
            if req.wait and not all(c.is_finished for c in commits):
                return None
            return [commit_info(tx, c) for c in commits]

        infos = waits.wait_until(self.ctx, context, "InspectCommitSet", check)
        yield from infos or []

    def ListCommitSet(self, req: Any, context: Any) -> Iterator[Any]:
        project = project_of(req.project) if req.HasField("project") and req.project.name else ""
        with self.store.read() as tx:
            ids = tx.q("SELECT id, MAX(cid) AS m FROM commits WHERE (?='' OR project=?) "
                       "GROUP BY id ORDER BY m DESC", (project, project))
            out = [pfs_pb2.CommitSetInfo(
                commit_set=pfs_pb2.CommitSet(id=r["id"]),
                commits=[commit_info(tx, c) for c in model.commits_in_set(tx, r["id"])])
                for r in ids]
        yield from out

    def SquashCommitSet(self, req: Any, context: Any) -> Any:
        return self._write(apply_squash_commit_set, req)

    def DropCommitSet(self, req: Any, context: Any) -> Any:
        return self._write(apply_drop_commit_set, req)

    # ------------------------------------------------------------ branches

    def CreateBranch(self, req: Any, context: Any) -> Any:
        return self._write(apply_create_branch, req)

    def InspectBranch(self, req: Any, context: Any) -> Any:
        b = branch_key(req.branch)
        with self.store.read() as tx:
            model.require_repo(tx, b.project, b.repo)
            if not model.branch_exists(tx, b):
                raise errors.branch_not_found(b.project, b.repo, b.name)
            return branch_info(tx, b)

    def ListBranch(self, req: Any, context: Any) -> Iterator[Any]:
        project, repo = repo_ref(req.repo)
        order = "ASC" if req.reverse else "DESC"
        with self.store.read() as tx:
            model.require_repo(tx, project, repo)
            rows = tx.q(f"SELECT name FROM branches WHERE project=? AND repo=? ORDER BY seq "
                        f"{order}", (project, repo))
            out = [branch_info(tx, BranchKey(project, repo, r["name"])) for r in rows]
        yield from out

    def DeleteBranch(self, req: Any, context: Any) -> Any:
        return self._write(apply_delete_branch, req)

    # ------------------------------------------------------------ files

    def ModifyFile(self, request_iterator: Any, context: Any) -> Any:
        from localpachd.pfs.modify import run_modify
        from localpachd.pfs.urls import Interrupt

        interrupt = Interrupt()  # a URL fetch blocked on its socket ends with the call
        context.add_callback(interrupt.fire)
        run_modify(self.ctx, request_iterator, lambda: _not_cancelled(context), interrupt)
        return E()

    def DiffFile(self, req: Any, context: Any) -> Iterator[Any]:
        from localpachd.pfs.diff import diff

        with self.store.read() as tx:
            out = diff(tx, req)
        yield from out

    def FindCommits(self, req: Any, context: Any) -> Iterator[Any]:
        from localpachd.pfs.diff import find_commits

        with self.store.read() as tx:
            out = find_commits(tx, req)
        yield from out

    def Fsck(self, req: Any, context: Any) -> Iterator[Any]:
        from localpachd.pfs.diff import fsck

        with self.store.read() as tx:
            problems = fsck(tx, self.store.blobs)
        for p in problems:
            yield pfs_pb2.FsckResponse(error=p)


fill_unimplemented(PfsServicer, "pfs_v2.API")


def register(server: grpc.Server, ctx: Ctx) -> None:
    ctx.store.register_schema(filesets.SCHEMA)
    for name, req_type, apply, field in TXN_METHODS:
        ctx.transactions.register(f"/pfs_v2.API/{name}", req_type, apply, field)
    wire.register_fast(pfs_pb2_grpc.add_APIServicer_to_server, PfsServicer(ctx), server,
                       ("/pfs_v2.API/ListRepo", "/pfs_v2.API/InspectRepo"))  # fmt: skip
