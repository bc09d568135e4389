"""Real git for tests: the git CLI with a test identity, a bare "remote" on branch main, and
`GitOps` — that remote plus a work clone pushing to it, as a developer would.

Used by the agent, runner and bump integration tests and by the e2e tests. Identities are set
per command or per repo, never read from ~/.gitconfig (CI machines have none).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path


def git(cwd: Path, *args: str, who: str | None = "Human") -> str:
    """Runs git in `cwd` as `who` (<who>@example.invalid; None: the repo's own identity) and
    returns its stripped stdout; a failing command fails the test with git's stderr."""
    ident = ["-c", f"user.name={who}", "-c", f"user.email={who.lower()}@example.invalid"] \
        if who else []
    proc = subprocess.run(["git", *ident, *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def clone(remote: Path, dest: Path) -> Path:
    git(dest.parent, "clone", "-q", str(remote), str(dest))
    return dest


def write_files(root: Path, files: Mapping[str, str | None]) -> None:
    """Writes each file (relative path -> text) under `root`; None deletes it."""
    for rel, text in files.items():
        path = root / rel
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def bare_remote(path: Path, config: Mapping[str, str] | None = None) -> Path:
    """An empty bare repo at `path` whose default branch is main; `config`: settings of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    git(path.parent, "init", "-q", "--bare", "-b", "main", str(path))
    for key, value in (config or {}).items():
        git(path, "config", key, value)
    return path


def seeded_remote(tmp: Path, files: Mapping[str, str], message: str,
                  config: Mapping[str, str] | None = None) -> Path:
    """`tmp/remote.git` whose main holds `files` in one commit by "Human" (pushed from the
    clone `tmp/seed`)."""
    bare = bare_remote(tmp / "remote.git", config)
    seed = clone(bare, tmp / "seed")
    write_files(seed, files)
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", message)
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


class GitOps:
    """`remote` (tmp/remote.git, branch main) is what the agent follows; `push()` commits to the
    work clone `root/work` (as Ops <ops@example.com>) and publishes it."""

    def __init__(self, root: Path) -> None:
        self.remote = bare_remote(root / "remote.git")
        self.work = root / "work"
        git(root, "init", "-q", "-b", "main", str(self.work))
        for key, value in (("user.email", "ops@example.com"), ("user.name", "Ops"),
                           ("commit.gpgsign", "false")):
            git(self.work, "config", key, value)
        git(self.work, "remote", "add", "origin", str(self.remote))

    @property
    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")

    def push(self, files: Mapping[str, str | None], message: str,
             signing_key: Path | None = None) -> str:
        """Writes (None: deletes) `files`, commits everything in the work tree (signed with an
        ssh key if given), pushes to main; the new commit's sha."""
        write_files(self.work, files)
        git(self.work, "add", "-A", who=None)
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={signing_key}"] \
            if signing_key else []
        git(self.work, *sign, "commit", "-q", "--allow-empty", *(["-S"] if signing_key else []),
            "-m", message, who=None)
        git(self.work, "push", "-q", "origin", "HEAD:main", who=None)
        return self.head
