"""PFS projects and repos on a store transaction (create, inspect helpers, delete, sizes).

Part of the PFS model (`localpachd.pfs.model` re-exports every function here, so callers use
`model.create_repo`, `model.require_repo`, ...). Pure SQL over `localpachd.store.Tx`.
"""

from __future__ import annotations

import re
import time

from localpachd import errors
from localpachd.events import REPO_DELETED, Event
from localpachd.store import Tx

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")


# ---------------------------------------------------------------- projects


def require_project(tx: Tx, project: str) -> None:
    if tx.one("SELECT 1 FROM projects WHERE name=?", (project,)) is None:
        raise errors.project_not_found(project)


def create_project(tx: Tx, name: str, description: str, update: bool) -> None:
    if not NAME_RE.match(name):
        raise errors.InvalidArgument(
            f"project name ({name}) invalid: only alphanumeric characters, underscores, "
            "and dashes are allowed")
    if tx.one("SELECT 1 FROM projects WHERE name=?", (name,)) is not None:
        if not update:
            raise errors.project_exists(name)
        tx.x("UPDATE projects SET description=? WHERE name=?", (description, name))
        return
    tx.x("INSERT INTO projects VALUES(?, ?, ?)", (name, description, time.time()))


def delete_project(tx: Tx, name: str, force: bool) -> None:
    require_project(tx, name)
    repos = [r["name"] for r in tx.q("SELECT name FROM repos WHERE project=?", (name,))]
    if repos and not force:
        raise errors.FailedPrecondition(
            f"cannot delete project {name}: it still contains repos {', '.join(sorted(repos))}")
    for repo in repos:
        delete_repo(tx, name, repo, force=True)
    tx.x("DELETE FROM projects WHERE name=?", (name,))


# ---------------------------------------------------------------- repos


def require_repo(tx: Tx, project: str, repo: str) -> None:
    if tx.one("SELECT 1 FROM repos WHERE project=? AND name=?", (project, repo)) is None:
        if tx.one("SELECT 1 FROM projects WHERE name=?", (project,)) is None:
            raise errors.project_not_found(project)
        raise errors.repo_not_found(project, repo)


def create_repo(tx: Tx, project: str, name: str, description: str = "", update: bool = False,
                repo_type: str = "user") -> None:
    if not NAME_RE.match(name):
        raise errors.InvalidArgument(
            f"repo name ({name}) invalid: only alphanumeric characters, underscores, "
            "and dashes are allowed")
    require_project(tx, project)
    if tx.one("SELECT 1 FROM repos WHERE project=? AND name=?", (project, name)) is not None:
        if not update:
            raise errors.repo_exists(project, name)
        tx.x("UPDATE repos SET description=? WHERE project=? AND name=?",
             (description, project, name))
        return
    tx.x("INSERT INTO repos(project, name, type, description, created) VALUES(?,?,?,?,?)",
         (project, name, repo_type or "user", description, time.time()))


def delete_repo(tx: Tx, project: str, repo: str, force: bool) -> None:
    require_repo(tx, project, repo)
    users = tx.q("SELECT DISTINCT project, repo FROM branch_prov WHERE up_project=? AND "
                 "up_repo=? AND NOT (project=? AND repo=?)", (project, repo, project, repo))
    if users and not force:
        names = ", ".join(errors.repo_str(u["project"], u["repo"]) for u in users)
        raise errors.FailedPrecondition(
            f"cannot delete repo {errors.repo_str(project, repo)}: repos {names} have "
            "provenance on it (delete them first, or use force)")
    cids = [r["cid"] for r in tx.q("SELECT cid FROM commits WHERE project=? AND repo=?",
                                   (project, repo))]
    for cid in cids:
        tx.x("DELETE FROM files WHERE cid=?", (cid,))
        tx.x("DELETE FROM commit_prov WHERE cid=? OR up_cid=?", (cid, cid))
    tx.x("DELETE FROM commits WHERE project=? AND repo=?", (project, repo))
    tx.x("DELETE FROM branch_prov WHERE (project=? AND repo=?) OR (up_project=? AND up_repo=?)",
         (project, repo, project, repo))
    tx.x("DELETE FROM branches WHERE project=? AND repo=?", (project, repo))
    tx.x("DELETE FROM repos WHERE project=? AND name=?", (project, repo))
    tx.emit(Event(REPO_DELETED, project, repo))


def repo_size(tx: Tx, project: str, repo: str) -> int:
    """Size of the repo's `master` head (Pachyderm reports the default branch's size)."""
    row = tx.one("SELECT c.cid, c.finished, c.size FROM branches b JOIN commits c ON "
                 "c.cid=b.head_cid WHERE b.project=? AND b.repo=? AND b.name='master'",
                 (project, repo))
    if row is None:
        return 0
    return int(row["size"]) if row["finished"] is not None else tree_size(tx, row["cid"])


def tree_size(tx: Tx, cid: int) -> int:
    row = tx.one("SELECT COALESCE(SUM(size), 0) AS s FROM files WHERE cid=?", (cid,))
    return int(row["s"]) if row else 0
