"""The two trees a preview runs: the base ref (exported with `git archive`) and the working tree.

Used by `agent.preview.flow`. Runs the git CLI in the repository (never GitPython: that is
`agent.source`'s). Stage code is copied into a folder of its own (`code/stages`), which becomes
the PYTHONPATH of the localpachd that runs the tree, so `python3 -m stages.X` imports that tree's
stages — not the installed ones, and not the tree's own copy of agent/ or localpachd/.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

from agent.errors import UsageError

STAGE_PACKAGES = ("stages",)
# What the stage image is built from: a change here means a new image tag after merge.
IMAGE_INPUTS = ("stages", "Dockerfile", "requirements")


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """`git -C repo ARGS`, output captured; a failure is a UsageError naming the command."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"git {' '.join(args)} failed in {repo}: {err[-1] if err else ''}",
                         hint="run preview inside a git checkout and pass --base a commit, "
                              "branch or tag that exists there (fetch it first in CI)")
    return proc


def repo_root(start: Path) -> Path:
    return Path(git(start, "rev-parse", "--show-toplevel").stdout.decode().strip())


def tree_hash(repo: Path, ref: str) -> str:
    """The tree hash of REF: the cache key (same content, same key, whatever the commit)."""
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{tree}}").stdout.decode().strip()


def commit_of(repo: Path, ref: str) -> str:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").stdout
    return out.decode().strip()


def export(repo: Path, ref: str, dest: Path) -> Path:
    """Write REF's files into dest (git archive, extracted with tarfile's safe `data` filter)."""
    raw = git(repo, "archive", "--format=tar", ref).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def stage_code(tree: Path, dest: Path) -> Path:
    """Copy tree's stage packages into dest (the PYTHONPATH of the server that runs them)."""
    for name in STAGE_PACKAGES:
        if (tree / name).is_dir():
            shutil.copytree(tree / name, dest / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def image_changed(repo: Path, base: str) -> bool:
    """True when what the stage image is built from differs between base and the working tree
    (tracked files): CI on main would then build a new image and bump every tag."""
    return git(repo, "diff", "--quiet", base, "--", *IMAGE_INPUTS, check=False).returncode != 0
