"""Write side of git for `pachsync bump-image`: commit a few files, push, and on a rejected push
fetch, move the bump onto the new remote head and retry — never force.

Called by `agent.bump` only. The strategy on rejection is "replay, don't rebase the bump": the
bump commit is dropped, any other local commits are rebased (usually a fast-forward, as in CI
where the checkout is the merged commit), and the caller's `redo` callback re-runs the rewrite on
the new tree. The rewrite is idempotent, so the image lines can never conflict and every commit
someone else pushed meanwhile is kept. Pushes use a plain `HEAD:refs/heads/<branch>` refspec
(no `+`, no `--force`), so the server refuses anything that is not a fast-forward.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from agent.errors import Conflict, PachsyncError, Transient, UsageError

# Texts git prints when a push lost a race: the remote has commits we do not have.
_RACE_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "stale info", "cannot lock ref")
# A refusal by the server itself (hook, branch policy, permissions): retrying cannot help.
_REFUSED_MARKERS = ("[remote rejected]", "permission", "denied", "403", "TF401027", "TF402455")


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class PushResult:
    commit: str | None  # the pushed bump commit now at the remote (None: nothing left to push)
    attempts: int       # push attempts made
    replays: int        # times the bump was moved onto a new remote head
    pushed: bool


class PushRejected(PachsyncError):
    """The remote refused the push for a reason retrying cannot fix (hook, branch policy, auth)."""


def repo_root(path: Path) -> Path:
    """The top of the git work tree that contains `path`."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise UsageError(
            f"{path} is not inside a git work tree",
            hint="--commit/--push need a clone of the GitOps repo; without them it only rewrites",
        ) from exc
    if repo.working_tree_dir is None:
        raise UsageError(f"{path} is inside a bare repository")
    return Path(repo.working_tree_dir)


def current_branch(root: Path) -> str | None:
    """The checked-out branch name, or None on a detached HEAD (the usual state in CI)."""
    repo = git.Repo(root)
    return None if repo.head.is_detached else repo.active_branch.name


def head_sha(root: Path) -> str:
    return git.Repo(root).head.commit.hexsha


def dirty_paths(root: Path, paths: Sequence[str]) -> list[str]:
    """Those of `paths` (relative to root) with staged or unstaged changes against HEAD."""
    if not paths:
        return []
    out = git.Repo(root).git.status("--porcelain", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def configured_author(root: Path) -> Author | None:
    """user.name/user.email from git config, if both are set."""
    reader = git.Repo(root).config_reader()
    try:
        return Author(str(reader.get_value("user", "name")), str(reader.get_value("user", "email")))
    except Exception:  # noqa: BLE001 - configparser raises several unrelated types when unset
        return None


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    """True when commit `older` is a proper ancestor of `newer`; False if either is unknown."""
    repo = git.Repo(root)
    try:
        if repo.commit(older).hexsha == repo.commit(newer).hexsha:
            return False
        repo.git.merge_base("--is-ancestor", older, newer)
        return True
    except (git.GitCommandError, ValueError, git.BadName):
        return False


def commit_paths(root: Path, paths: Sequence[str], message: str, author: Author) -> str:
    """One commit of exactly `paths` (whatever else is staged stays out of it). Returns its sha."""
    repo = git.Repo(root)
    env = _identity_env(author)
    try:
        repo.git.add("--", *paths)
        with repo.git.custom_environment(**env):
            # `commit -- paths` = `--only`: the index outside these paths stays out of it.
            # --no-verify: local hooks must not alter a rewrite that was already verified.
            repo.git.commit("--no-verify", "-m", message, "--", *paths)
    except git.GitCommandError as exc:
        raise PachsyncError(
            f"git commit of {', '.join(paths)} failed: {_last_lines(str(exc.stderr))}",
            hint="check the git identity and commit signing settings of this clone",
        ) from exc
    return repo.head.commit.hexsha


def _identity_env(author: Author) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": author.name,
        "GIT_COMMITTER_EMAIL": author.email,
    }


def _push_once(root: Path, remote: str, branch: str) -> tuple[bool, str]:
    """Push HEAD to remote/branch without force. (ok, git's output)."""
    repo = git.Repo(root)
    try:
        out = repo.git.push("--porcelain", remote, f"HEAD:refs/heads/{branch}")
        return True, str(out)
    except git.GitCommandError as exc:
        return False, f"{exc.stdout}\n{exc.stderr}"


def _fetch(root: Path, remote: str, branch: str) -> str:
    """Fetch the remote branch; returns the sha of its head."""
    repo = git.Repo(root)
    try:
        repo.git.fetch(remote, f"refs/heads/{branch}")
    except git.GitCommandError as exc:
        raise Transient(
            f"git fetch {remote} {branch} failed: {exc.stderr.strip()}",
            hint="check the remote URL and credentials",
        ) from exc
    return repo.commit("FETCH_HEAD").hexsha


def _move_onto(root: Path, new_head: str) -> None:
    """Drop the bump commit at HEAD and put the remaining local commits on top of `new_head`.
    On failure the clone is put back on the bump commit and Conflict is raised."""
    repo = git.Repo(root)
    bump = repo.head.commit.hexsha
    base = repo.head.commit.parents[0].hexsha
    try:
        repo.git.reset("--keep", base)
        if base == new_head or is_ancestor(root, base, new_head):
            repo.git.reset("--keep", new_head)  # the CI case: a fast-forward onto others' commits
            return
        repo.git.rebase(new_head)
    except git.GitCommandError as exc:
        _put_back(repo, bump)
        raise Conflict(
            f"cannot move the bump onto {new_head[:12]}: {_last_lines(str(exc.stderr))}",
            hint="local commits below the bump conflict with the remote, or local changes are "
            "in the way: push, drop or stash them first (bump-image replays only its own commit)",
        ) from exc


def _put_back(repo: git.Repo, commit: str) -> None:
    """Best effort: leave the clone as it was before the replay started."""
    for args in (("rebase", "--abort"), ("reset", "--keep", commit)):
        try:
            repo.git.execute(["git", *args])
        except git.GitCommandError:
            pass  # nothing to abort, or the reset is impossible: the error raised says enough


def push_with_retry(
    root: Path,
    remote: str,
    branch: str,
    redo: Callable[[], Sequence[str]],
    message: str,
    author: Author,
    retries: int = 5,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] | None = None,
) -> PushResult:
    """Push HEAD (the bump commit). On a lost race: fetch, replay the bump via `redo` (which
    rewrites the files on the new tree and returns the changed paths), commit, retry with
    exponential backoff. `retries` counts the retries after the first attempt."""
    replays = 0
    output = ""
    for attempt in range(1, retries + 2):
        ok, output = _push_once(root, remote, branch)
        if ok:
            return PushResult(head_sha(root), attempt, replays, True)
        kind = classify_push_failure(output)
        if kind == "refused":
            raise PushRejected(
                f"git push {remote} HEAD:{branch} was refused: {_last_lines(output)}",
                hint="the identity running bump-image must be allowed to push to "
                f"{branch} for specs/ (see docs/deploying.md, branch policies)",
            )
        if attempt > retries:
            break
        (sleep or _sleep)(backoff_s * (2 ** (attempt - 1)))
        if kind == "network":
            continue  # same commit, just try again
        _move_onto(root, _fetch(root, remote, branch))
        replays += 1
        changed = list(redo())
        if not changed:  # someone else already bumped to the same tag: nothing left to push
            return PushResult(None, attempt, replays, False)
        commit_paths(root, changed, message, author)
    raise Transient(
        f"git push {remote} HEAD:{branch} failed {retries + 1} times: {_last_lines(output)}",
        hint="others keep pushing to the branch or the remote is unreachable; "
        "run the step again or raise --retries",
    )


def _sleep(seconds: float) -> None:
    """The backoff wait (a seam tests replace to record the delays instead of waiting)."""
    time.sleep(seconds)


def classify_push_failure(output: str) -> str:
    """'race' (the remote moved: replay and retry), 'refused' (policy: stop) or 'network'."""
    if "cannot lock ref" in output:
        return "race"
    if any(marker in output for marker in _REFUSED_MARKERS):
        return "refused"
    if any(marker in output for marker in _RACE_MARKERS):
        return "race"
    return "network"


def _last_lines(text: str, n: int = 4) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:])


def default_author(root: Path | None, name: str | None = None, email: str | None = None
                   ) -> Author:
    """Field by field: the given `name`/`email` (command-line options), else
    PACHSYNC_AUTHOR_NAME/EMAIL, else GIT_AUTHOR_NAME/EMAIL, else git config, else a bot name."""
    name = name or os.environ.get("PACHSYNC_AUTHOR_NAME") or os.environ.get("GIT_AUTHOR_NAME")
    email = (email or os.environ.get("PACHSYNC_AUTHOR_EMAIL")
             or os.environ.get("GIT_AUTHOR_EMAIL"))
    if name and email:
        return Author(name, email)
    configured = configured_author(root) if root is not None else None
    fallback = configured or Author("pachsync-bot", "pachsync-bot@users.noreply.localhost")
    return Author(name or fallback.name, email or fallback.email)
