"""PFS calls that can run inside a Pachyderm transaction, as `apply(ctx, tx, request)`.

Registered with the transaction registry by `localpachd.pfs.servicer.register`; the ordinary
RPCs run the same functions in their own store transaction, so both paths behave alike.
"""

from __future__ import annotations

from python_pachyderm.proto.v2.pfs import pfs_pb2

from localpachd import errors
from localpachd.context import ServerContext
from localpachd.pfs import model
from localpachd.pfs.convert import branch_key, commit_pb, commit_ref, repo_ref, resolve
from localpachd.pfs.model import Commit
from localpachd.store import Tx


def apply_create_repo(ctx: ServerContext, tx: Tx, req: pfs_pb2.CreateRepoRequest) -> None:
    project, name = repo_ref(req.repo)
    model.create_repo(tx, project, name, req.description, req.update, req.repo.type or "user")


def apply_delete_repo(ctx: ServerContext, tx: Tx, req: pfs_pb2.DeleteRepoRequest) -> None:
    project, name = repo_ref(req.repo)
    if tx.one("SELECT 1 FROM repos WHERE project=? AND name=?", (project, name)) is None:
        return  # Pachyderm 2.7 deletes a missing repo without complaint
    if not req.force:
        for guard in ctx.delete_repo_guards:
            guard(tx, project, name)
    model.delete_repo(tx, project, name, req.force)


def has_commit(c: pfs_pb2.Commit) -> bool:
    return bool(c.id or c.branch.name)


def apply_start_commit(ctx: ServerContext, tx: Tx, req: pfs_pb2.StartCommitRequest
                       ) -> pfs_pb2.Commit:  # fmt: skip
    b = branch_key(req.branch)
    parent = None
    if req.HasField("parent") and has_commit(req.parent):
        project, repo, branch, cid = commit_ref(req.parent)
        parent = model.resolve_commit(tx, project or b.project, repo or b.repo, branch, cid)
    return commit_pb(model.start_commit(tx, b.project, b.repo, b.name, parent, req.description))


def apply_finish_commit(ctx: ServerContext, tx: Tx, req: pfs_pb2.FinishCommitRequest) -> None:
    commit = resolve(tx, req.commit)
    if not req.force and not commit.is_finished:
        for guard in ctx.finish_commit_guards:
            guard(tx, commit)
    model.finish_commit(tx, commit, req.error, req.description or None)


def commit_set(tx: Tx, cs: str) -> list[Commit]:
    commits = model.commits_in_set(tx, cs)
    if not commits:
        raise errors.commit_set_not_found(cs)
    return commits


def apply_squash_commit_set(ctx: ServerContext, tx: Tx, req: pfs_pb2.SquashCommitSetRequest
                            ) -> None:  # fmt: skip
    commits = commit_set(tx, req.commit_set.id)
    for c in commits:
        if not c.is_finished:
            raise errors.FailedPrecondition(
                f"cannot squash commit set {c.id}: commit {errors.repo_str(c.project, c.repo)}"
                f"@{c.id} is not finished")
        if not model.children(tx, c.cid):
            raise errors.FailedPrecondition(
                "cannot squash a commit that has no children as that would cause data loss, use "
                f"the drop operation instead: {errors.commit_str(c.project, c.repo, c.id)}")
    model.delete_commits(tx, commits, squash=True)


def apply_drop_commit_set(ctx: ServerContext, tx: Tx, req: pfs_pb2.DropCommitSetRequest) -> None:
    commits = commit_set(tx, req.commit_set.id)
    for c in commits:
        if model.children(tx, c.cid):
            raise errors.FailedPrecondition(
                "cannot drop a commit that has children: "
                f"{errors.commit_str(c.project, c.repo, c.id)}")
    model.delete_commits(tx, commits, squash=False)


def apply_create_branch(ctx: ServerContext, tx: Tx, req: pfs_pb2.CreateBranchRequest) -> None:
    b = branch_key(req.branch)
    if req.HasField("trigger") and req.trigger.branch:
        raise errors.Unimplemented("branch triggers are not supported by localpachd")
    head = None
    if req.HasField("head") and has_commit(req.head):
        project, repo, branch, cid = commit_ref(req.head)
        head = model.resolve_commit(tx, project if repo else b.project, repo or b.repo,
                                    branch, cid)
    model.create_branch(tx, b, head, [branch_key(p) for p in req.provenance],
                        req.new_commit_set)


def apply_delete_branch(ctx: ServerContext, tx: Tx, req: pfs_pb2.DeleteBranchRequest) -> None:
    model.delete_branch(tx, branch_key(req.branch), req.force)


TXN_METHODS = [
    ("CreateRepo", pfs_pb2.CreateRepoRequest, apply_create_repo, "create_repo"),
    ("DeleteRepo", pfs_pb2.DeleteRepoRequest, apply_delete_repo, "delete_repo"),
    ("StartCommit", pfs_pb2.StartCommitRequest, apply_start_commit, "start_commit"),
    ("FinishCommit", pfs_pb2.FinishCommitRequest, apply_finish_commit, "finish_commit"),
    ("SquashCommitSet", pfs_pb2.SquashCommitSetRequest, apply_squash_commit_set,
     "squash_commit_set"),
    ("CreateBranch", pfs_pb2.CreateBranchRequest, apply_create_branch, "create_branch"),
    ("DeleteBranch", pfs_pb2.DeleteBranchRequest, apply_delete_branch, "delete_branch"),
]
