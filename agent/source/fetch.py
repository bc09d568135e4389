"""Getting the GitOps repo: clone once into a cache dir, then fetch and check out the branch head.

Called by `agent.sync.sync_once` (and so by `plan/apply --source` and the agent loop). The cache
keeps one clone per (source, branch) so a poll costs one `git fetch`. The work tree is always
forced to the fetched head (detached, cleaned): the agent never has local changes to keep.
Credentials never appear in URLs we log: an HTTPS token comes from `PACHSYNC_GIT_TOKEN` (or the
file named by `PACHSYNC_GIT_TOKEN_FILE`) and travels as an HTTP header through git's env config.
Git failures become `Transient` (network, auth: retry with backoff) with git's message,
minus secrets.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import git

from agent.errors import Transient, UsageError

_CRED_RX = re.compile(r"(https?://)[^/@\s]+@")


@dataclass(frozen=True)
class Checkout:
    path: Path  # the work tree root
    commit: str  # full sha of the checked-out head
    branch: str
    source: str  # canonical source (no credentials)
    subject: str = ""  # first line of the commit message


def redact(text: str) -> str:
    """Remove user:password@ from URLs in a message."""
    return _CRED_RX.sub(r"\1***@", text)


def canonical_source(source: str) -> str:
    """A stable, credential-free name for a source: URL without userinfo, or an absolute path."""
    if "://" in source:
        url = urlparse(source)
        netloc = url.hostname or ""
        if url.port:
            netloc += f":{url.port}"
        return urlunparse(url._replace(netloc=netloc)).rstrip("/")
    if re.match(r"^[\w.-]+@[\w.-]+:", source):  # scp-like git@host:org/repo
        return source
    return str(Path(source).expanduser().resolve())


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pachsync" / "sources"


def _git_env() -> dict[str, str]:
    token = os.environ.get("PACHSYNC_GIT_TOKEN")
    token_file = os.environ.get("PACHSYNC_GIT_TOKEN_FILE")
    if not token and token_file:
        token = Path(token_file).read_text().strip()
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if token:
        basic = base64.b64encode(f"pachsync:{token}".encode()).decode()
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
    return env


def origin_url(source: str) -> str:
    """What the cache clone's `origin` points at: an existing local path made absolute (a
    relative `.` would otherwise name the cache clone itself), anything else (URL, scp-like
    host:path) unchanged."""
    if "://" in source or re.match(r"^[\w.-]+@[\w.-]+:", source):
        return source
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def _clone_dir(cache_dir: Path, source: str, branch: str) -> Path:
    key = hashlib.sha256(f"{canonical_source(source)}#{branch}".encode()).hexdigest()[:16]
    return cache_dir / key


def _open_or_clone(target: Path, source: str, env: dict[str, str]) -> git.Repo:
    if (target / ".git").is_dir():
        repo = git.Repo(target)
        if repo.remotes and repo.remotes.origin.url != source:
            repo.remotes.origin.set_url(source)
        return repo
    target.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(target)
    repo.create_remote("origin", source)
    return repo


def _checked_out(repo: git.Repo) -> str | None:
    try:
        return str(repo.head.commit.hexsha)
    except ValueError:  # fresh clone: no HEAD yet
        return None


def fetch(source: str, branch: str = "main", cache_dir: Path | None = None) -> Checkout:
    """Fetch `branch` of `source` into the cache and check its head out (detached, clean)."""
    if not source:
        raise UsageError("no git source given", hint="pass --source URL_OR_PATH")
    target = _clone_dir(cache_dir or default_cache_dir(), source, branch)
    env = _git_env()
    try:
        repo = _open_or_clone(target, origin_url(source), env)
        with repo.git.custom_environment(**env):
            repo.git.fetch("--prune", "--force", "origin",
                           f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        head = repo.commit(f"refs/remotes/origin/{branch}")
        if _checked_out(repo) != head.hexsha:  # a no-op poll costs the fetch alone
            repo.git.checkout("--force", "--detach", head.hexsha)
            repo.git.clean("-ffdx")
    except git.GitCommandError as exc:
        detail = git_detail(redact(str(exc.stderr or exc)))
        hint = fetch_hint(detail, branch)
        raise Transient(f"git fetch of {canonical_source(source)} ({branch}) failed: {detail}",
                        hint=hint) from exc
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError) as exc:
        raise Transient(f"git checkout of {canonical_source(source)} ({branch}) failed: {exc}",
                        hint=f"remove the cache dir {target} if it is corrupt") from exc
    message = head.message if isinstance(head.message, str) else head.message.decode()
    return Checkout(target, head.hexsha, branch, canonical_source(source),
                    message.splitlines()[0] if message else "")


def git_detail(stderr: str) -> str:
    """git's error output as one line: its fatal:/error: lines (GitPython wraps stderr as
    `stderr: '...'`, with git's advice lines after the reason)."""
    text = stderr.strip()
    if text.startswith("stderr:"):
        text = text[len("stderr:"):].strip().strip("'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines[:1]
    return "; ".join(dict.fromkeys(reasons))


def fetch_hint(detail: str, branch: str) -> str:
    """What to do about a failed fetch, from git's reason."""
    low = detail.lower()
    if "couldn't find remote ref" in low:
        return f"branch {branch!r} does not exist in the source: check the branch name (--branch)"
    if "does not appear to be a git repository" in low or "repository not found" in low \
            or ("not found" in low and "http" in low):
        return "check --source: a git URL, or the path of a git repository (not a plain folder)"
    if "authentication" in low or "could not read username" in low or "403" in low:
        return "the source needs credentials: set PACHSYNC_GIT_TOKEN (or --git-token-file)"
    return "check the URL, network and PACHSYNC_GIT_TOKEN"


def local_head(path: Path) -> str | None:
    """The HEAD sha of the git work tree containing `path`, with `+dirty` appended when files
    under `path` differ from it (None if not in a repo)."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
        sha = str(repo.head.commit.hexsha)
        rel = Path(path).resolve().relative_to(Path(repo.working_tree_dir or path).resolve())
        dirty = repo.is_dirty(untracked_files=True, path=str(rel))
        return sha + ("+dirty" if dirty else "")
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None
