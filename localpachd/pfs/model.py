"""PFS domain operations on a store transaction: projects, repos, branches, commits, provenance.

Pure SQL over `localpachd.store.Tx`; no protobuf here (the servicer converts). Used by the pfs
servicer, the transaction module and the pps/jobs modules. Every function takes the `Tx` first so a
caller can combine several operations atomically inside one `store.write()`.

Provenance as Pachyderm 2.x: a branch may list upstream branches (`branch_prov`). Starting a
commit on a branch opens, in the same commit set, an AUTO commit on every downstream branch
(subvenance) whose parent is that branch's previous head; those are the pipelines' output
commits (job ID == output commit ID == commit-set ID). Each commit stores its whole file
table (copied from its parent when it starts), so reading any commit is one indexed range query.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from localpachd import errors
from localpachd.events import (
    BRANCH_CHANGED,
    COMMIT_DELETED,
    COMMIT_FINISHED,
    COMMIT_STARTED,
    Event,
)
from localpachd.pfs.repos import NAME_RE as NAME_RE
from localpachd.pfs.repos import create_project as create_project
from localpachd.pfs.repos import create_repo as create_repo
from localpachd.pfs.repos import delete_project as delete_project
from localpachd.pfs.repos import delete_repo as delete_repo
from localpachd.pfs.repos import repo_size as repo_size
from localpachd.pfs.repos import require_project as require_project
from localpachd.pfs.repos import require_repo as require_repo
from localpachd.pfs.repos import tree_size as tree_size
from localpachd.store import Tx

UUID_RE = re.compile(r"^[0-9a-f]{12}4[0-9a-f]{19}$")
ANCESTRY_RE = re.compile(r"^(.*?)((?:[\^~][0-9]*)*)$")


@dataclass(frozen=True)
class BranchKey:
    project: str
    repo: str
    name: str


@dataclass(frozen=True)
class Commit:
    cid: int
    project: str
    repo: str
    id: str
    branch: str | None
    parent_cid: int | None
    origin: str
    description: str
    started: float
    finishing: float | None
    finished: float | None
    error: str
    size: int

    @property
    def is_finished(self) -> bool:
        return self.finished is not None


COMMIT_COLS = ("cid, project, repo, id, branch, parent_cid, origin, description, started, "
               "finishing, finished, error, size")


def _commit(row: Any) -> Commit:
    return Commit(*tuple(row))


def project_name(name: str) -> str:
    return name or "default"



# ---------------------------------------------------------------- commits


def get_commit(tx: Tx, cid: int) -> Commit:
    row = tx.one(f"SELECT {COMMIT_COLS} FROM commits WHERE cid=?", (cid,))
    if row is None:
        raise errors.NotFound(f"commit #{cid} not found")
    return _commit(row)


def find_commit(tx: Tx, project: str, repo: str, commit_id: str) -> Commit | None:
    row = tx.one(f"SELECT {COMMIT_COLS} FROM commits WHERE project=? AND repo=? AND id=?",
                 (project, repo, commit_id))
    return _commit(row) if row else None


def branch_head(tx: Tx, b: BranchKey) -> Commit | None:
    row = tx.one("SELECT head_cid FROM branches WHERE project=? AND repo=? AND name=?",
                 (b.project, b.repo, b.name))
    if row is None:
        return None
    if row["head_cid"] is None:
        return None
    return get_commit(tx, row["head_cid"])


def branch_exists(tx: Tx, b: BranchKey) -> bool:
    return tx.one("SELECT 1 FROM branches WHERE project=? AND repo=? AND name=?",
                  (b.project, b.repo, b.name)) is not None


def resolve_commit(tx: Tx, project: str, repo: str, branch: str, commit_id: str,
                   check_repo: bool = True) -> Commit:
    """A commit by id (with optional `^N`/`~N` ancestry; the id may also name a branch) or by
    branch head. Raises Pachyderm's not-found errors (the client parses them). With
    `check_repo=False` a missing repo is not looked at, as in 2.7's resolveCommit: its branch
    (or commit ID) is what is reported not found."""
    if check_repo:
        require_repo(tx, project, repo)
    ref = commit_id or branch
    if not ref:
        raise errors.InvalidArgument("a commit needs an id or a branch")
    m = ANCESTRY_RE.match(ref)
    base, ancestry = (m.group(1), m.group(2)) if m else (ref, "")
    found = find_commit(tx, project, repo, base) if commit_id else None
    if found is None:
        head = branch_head(tx, BranchKey(project, repo, base))
        if head is None:
            if UUID_RE.match(base):
                raise errors.commit_not_found(project, repo, ref)
            raise errors.branch_not_found(project, repo, base)
        found = head
    for step in re.findall(r"[\^~][0-9]*", ancestry):
        n = int(step[1:] or "1")
        for _ in range(n):
            if found.parent_cid is None:
                raise errors.commit_not_found(project, repo, ref)
            found = get_commit(tx, found.parent_cid)
    return found


def _insert_commit(tx: Tx, project: str, repo: str, branch: str, parent: Commit | None,
                   origin: str, description: str) -> Commit:
    cid_id = tx.commit_set_id
    if find_commit(tx, project, repo, cid_id) is not None:  # Pachyderm's ErrInconsistentCommit
        raise errors.FailedPrecondition(
            f"inconsistent dependencies: cannot create commit from "
            f"{errors.commit_str(project, repo, cid_id, branch)}; repo ({repo}) already has a "
            "commit in this transaction")
    pending = 1 if parent is not None and not parent.is_finished else 0
    cur = tx.x("INSERT INTO commits(project, repo, id, branch, parent_cid, origin, description,"
               " started, base_pending) VALUES(?,?,?,?,?,?,?,?,?)",
               (project, repo, cid_id, branch, parent.cid if parent else None, origin,
                description, time.time(), pending))
    cid = int(cur.lastrowid or 0)
    if parent is not None:
        tx.x("INSERT INTO files SELECT ?, path, hash, size, datum FROM files WHERE cid=?",
             (cid, parent.cid))
    _set_head(tx, BranchKey(project, repo, branch), cid)
    _link_provenance(tx, cid, BranchKey(project, repo, branch))
    tx.emit(Event(COMMIT_STARTED, project, repo, branch, cid_id, cid_id, origin))
    return get_commit(tx, cid)


def _link_provenance(tx: Tx, cid: int, b: BranchKey) -> None:
    """A commit's direct provenance: the current heads of its branch's direct provenance."""
    tx.x("DELETE FROM commit_prov WHERE cid=?", (cid,))
    for up in direct_provenance(tx, b):
        head = branch_head(tx, up)
        if head is not None:
            tx.x("INSERT OR IGNORE INTO commit_prov VALUES(?, ?)", (cid, head.cid))


def _set_head(tx: Tx, b: BranchKey, cid: int | None) -> None:
    if branch_exists(tx, b):
        tx.x("UPDATE branches SET head_cid=? WHERE project=? AND repo=? AND name=?",
             (cid, b.project, b.repo, b.name))
    else:
        if not NAME_RE.match(b.name):
            raise errors.InvalidArgument(
                f"branch name ({b.name}) invalid: only alphanumeric characters, underscores, "
                "and dashes are allowed")
        seq = tx.one("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM branches")
        tx.x("INSERT INTO branches(project, repo, name, head_cid, seq) VALUES(?,?,?,?,?)",
             (b.project, b.repo, b.name, cid, seq["s"] if seq else 1))


def start_commit(tx: Tx, project: str, repo: str, branch: str, parent: Commit | None = None,
                 description: str = "", origin: str = "USER") -> Commit:
    """Open a commit on `branch` (created if missing) and propagate to downstream branches."""
    require_repo(tx, project, repo)
    if not branch:
        raise errors.InvalidArgument("a commit must be started on a branch")
    b = BranchKey(project, repo, branch)
    if origin == "USER" and direct_provenance(tx, b):
        raise errors.FailedPrecondition(
            f"cannot start a commit on an output branch: {errors.repo_str(project, repo)}@{branch}")
    head = branch_head(tx, b)
    if parent is None:
        parent = head
    if parent is not None and parent.project == project and parent.repo == repo:
        if not parent.is_finished and origin == "USER":
            raise errors.parent_not_finished(project, repo, parent.id)
    commit = _insert_commit(tx, project, repo, branch, parent, origin, description)
    propagate(tx, b)
    return commit


def finish_commit(tx: Tx, commit: Commit, error: str = "", description: str | None = None,
                  ) -> Commit:
    if commit.is_finished:
        raise errors.commit_finished(commit.project, commit.repo, commit.id)
    now = time.time()
    size = tree_size(tx, commit.cid)
    desc = commit.description if description is None or description == "" else description
    tx.x("UPDATE commits SET finishing=?, finished=?, error=?, size=?, description=? "
         "WHERE cid=?", (now, now, error or "", size, desc, commit.cid))
    for child in tx.q("SELECT cid FROM commits WHERE parent_cid=? AND base_pending=1",
                      (commit.cid,)):
        _rebase(tx, child["cid"], commit.cid)
    tx.emit(Event(COMMIT_FINISHED, commit.project, commit.repo, commit.branch or "", commit.id,
                  commit.id, commit.origin, error or ""))
    return get_commit(tx, commit.cid)


def _rebase(tx: Tx, cid: int, parent_cid: int) -> None:
    """A child started while its parent was open copied a partial tree: recopy it now."""
    tx.x("DELETE FROM files WHERE cid=?", (cid,))
    tx.x("INSERT INTO files SELECT ?, path, hash, size, datum FROM files WHERE cid=?",
         (cid, parent_cid))
    tx.x("UPDATE commits SET base_pending=0 WHERE cid=?", (cid,))


def mark_modified(tx: Tx, cid: int) -> None:
    """The commit's tree was written directly: never recopy it from its parent."""
    tx.x("UPDATE commits SET base_pending=0 WHERE cid=?", (cid,))


def require_open(commit: Commit) -> None:
    if commit.is_finished:
        raise errors.commit_finished(commit.project, commit.repo, commit.id)


def children(tx: Tx, cid: int) -> list[Commit]:
    return [_commit(r) for r in tx.q(f"SELECT {COMMIT_COLS} FROM commits WHERE parent_cid=? "
                                     "ORDER BY cid", (cid,))]


def commit_provenance(tx: Tx, cid: int) -> list[Commit]:
    return [get_commit(tx, r["up_cid"]) for r in
            tx.q("SELECT up_cid FROM commit_prov WHERE cid=? ORDER BY up_cid", (cid,))]


def commits_in_set(tx: Tx, commit_set: str) -> list[Commit]:
    return [_commit(r) for r in tx.q(f"SELECT {COMMIT_COLS} FROM commits WHERE id=? "
                                     "ORDER BY cid", (commit_set,))]


def delete_commits(tx: Tx, commits: list[Commit], squash: bool) -> None:
    """Squash (children keep their data, re-parented) or drop (heads move to the parent)."""
    for c in commits:
        parent = c.parent_cid
        tx.x("UPDATE commits SET parent_cid=? WHERE parent_cid=?", (parent, c.cid))
        tx.x("UPDATE branches SET head_cid=? WHERE head_cid=?", (parent, c.cid))
        tx.x("DELETE FROM files WHERE cid=?", (c.cid,))
        tx.x("DELETE FROM commit_prov WHERE cid=? OR up_cid=?", (c.cid, c.cid))
        tx.x("DELETE FROM commits WHERE cid=?", (c.cid,))
        tx.emit(Event(COMMIT_DELETED, c.project, c.repo, c.branch or "", c.id, c.id, c.origin))
    del squash


# ---------------------------------------------------------------- branches and provenance


def direct_provenance(tx: Tx, b: BranchKey) -> list[BranchKey]:
    return [BranchKey(r["up_project"], r["up_repo"], r["up_branch"]) for r in tx.q(
        "SELECT up_project, up_repo, up_branch FROM branch_prov WHERE project=? AND repo=? "
        "AND branch=? ORDER BY up_project, up_repo, up_branch", (b.project, b.repo, b.name))]


def direct_subvenance(tx: Tx, b: BranchKey) -> list[BranchKey]:
    return [BranchKey(r["project"], r["repo"], r["branch"]) for r in tx.q(
        "SELECT project, repo, branch FROM branch_prov WHERE up_project=? AND up_repo=? "
        "AND up_branch=? ORDER BY project, repo, branch", (b.project, b.repo, b.name))]


def closure(tx: Tx, b: BranchKey, up: bool) -> list[BranchKey]:
    """All branches upstream (`up`) or downstream of `b`, nearest first, `b` excluded."""
    step = direct_provenance if up else direct_subvenance
    seen: list[BranchKey] = []
    frontier = [b]
    while frontier:
        nxt: list[BranchKey] = []
        for node in frontier:
            for n in step(tx, node):
                if n != b and n not in seen:
                    seen.append(n)
                    nxt.append(n)
        frontier = nxt
    return seen


def propagate(tx: Tx, b: BranchKey) -> list[Commit]:
    """Open an AUTO commit in this txn's commit set on every downstream branch (upstream first)."""
    down = closure(tx, b, up=False)
    opened: list[Commit] = []
    pending = list(down)
    while pending:
        # a branch goes only after every affected branch it depends on
        ready = [d for d in pending if not any(u in pending for u in closure(tx, d, up=True))]
        for d in ready or pending[:1]:
            pending.remove(d)
            head = branch_head(tx, d)
            if head is not None and head.id == tx.commit_set_id:
                _link_provenance(tx, head.cid, d)  # a later upstream commit of the same set
                continue
            opened.append(_insert_commit(tx, d.project, d.repo, d.name, head, "AUTO", ""))
    return opened


def _prepare_provenance(tx: Tx, b: BranchKey, provenance: list[BranchKey]) -> None:
    """Refuse cycles and same-repo provenance; create missing upstream branches (empty)."""
    for up in provenance:
        if (up.project, up.repo) == (b.project, b.repo):
            raise errors.InvalidArgument(
                f"repo {errors.repo_str(b.project, b.repo)} cannot be in the provenance of its "
                "own branch")
        if b in closure(tx, up, up=True):
            raise errors.InvalidArgument(
                f"branch {b.name} in repo {errors.repo_str(b.project, b.repo)} cannot be in "
                "its own provenance")
        require_repo(tx, up.project, up.repo)
        if not branch_exists(tx, up):
            create_branch(tx, up, None, [])


def create_branch(tx: Tx, b: BranchKey, head: Commit | None, provenance: list[BranchKey],
                  new_commit_set: bool = False) -> Commit | None:
    """Create or update a branch. Provenance changes open a new AUTO commit on it (and
    downstream), which a pipeline's job fills; a new branch without head gets an empty commit."""
    require_repo(tx, b.project, b.repo)
    _prepare_provenance(tx, b, provenance)
    tx.emit(Event(BRANCH_CHANGED, b.project, b.repo, b.name))
    old_prov = set(direct_provenance(tx, b))
    existed = branch_exists(tx, b)
    if head is not None:
        if (head.project, head.repo) != (b.project, b.repo):
            raise errors.InvalidArgument(
                f"branch {b.name} and its head {head.id} must be in the same repo")
        _set_head(tx, b, head.cid)
    elif not existed:
        _set_head(tx, b, None)
    tx.x("DELETE FROM branch_prov WHERE project=? AND repo=? AND branch=?",
         (b.project, b.repo, b.name))
    for up in provenance:
        tx.x("INSERT OR IGNORE INTO branch_prov VALUES(?,?,?,?,?,?)",
             (b.project, b.repo, b.name, up.project, up.repo, up.name))
    if provenance and (set(provenance) != old_prov or not existed) and head is None:
        current = branch_head(tx, b)
        if current is not None and current.id == tx.commit_set_id:
            return current  # already has a commit in this transaction's commit set
        opened = _insert_commit(tx, b.project, b.repo, b.name, current, "AUTO", "")
        propagate(tx, b)  # downstream branches follow, in the same commit set
        return opened
    if head is None and branch_head(tx, b) is None:
        c = _insert_commit(tx, b.project, b.repo, b.name, None, "AUTO", "")
        return finish_commit(tx, c)
    if head is not None and new_commit_set:  # the head's content as a new commit of its own
        return finish_commit(tx, start_commit(tx, b.project, b.repo, b.name, head))
    if head is not None and direct_subvenance(tx, b):
        propagate(tx, b)
    return branch_head(tx, b)


def delete_branch(tx: Tx, b: BranchKey, force: bool) -> None:
    require_repo(tx, b.project, b.repo)
    if not branch_exists(tx, b):
        raise errors.branch_not_found(b.project, b.repo, b.name)
    subs = direct_subvenance(tx, b)
    if subs and not force:
        names = ", ".join(f"{errors.repo_str(s.project, s.repo)}@{s.name}" for s in subs)
        raise errors.FailedPrecondition(
            f"branch {b.name} in repo {errors.repo_str(b.project, b.repo)} cannot be deleted: "
            f"branches {names} have provenance on it (use force)")
    tx.x("DELETE FROM branch_prov WHERE (project=? AND repo=? AND branch=?) OR "
         "(up_project=? AND up_repo=? AND up_branch=?)", (b.project, b.repo, b.name) * 2)
    tx.x("DELETE FROM branches WHERE project=? AND repo=? AND name=?",
         (b.project, b.repo, b.name))
    tx.emit(Event(BRANCH_CHANGED, b.project, b.repo, b.name))


def delete_all(tx: Tx) -> None:
    for table in ("files", "commit_prov", "commits", "branch_prov", "branches", "repos"):
        tx.x(f"DELETE FROM {table}")
    tx.x("DELETE FROM projects WHERE name != 'default'")
