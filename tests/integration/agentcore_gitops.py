"""Helpers for the agent-core integration tests: a GitOps repo with a bare remote and tiny shell
pipelines (waiting for jobs: tests/helpers/jobs.py). Imported by tests/integration/test_agent_*.py.

The pipelines are `sh` one-liners so a full run takes a fraction of a second: `copy` (one datum
per file of `raw`) and `count` (one datum over all of copy's output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.gitops import GitOps

from agent.sync import SyncOptions, SyncResult, sync_once

REPOS = """\
repos:
  - name: raw
    description: test input
"""

COPY = """\
pipeline:
  name: copy
description: copies every file
transform:
  image: {image}
  cmd:
    - sh
    - -c
    - cp -r /pfs/raw/* /pfs/out/
input:
  pfs:
    repo: raw
    glob: /*
parallelism_spec:
  constant: {parallelism}
"""

COUNT = """\
pipeline:
  name: count
description: counts copied files
transform:
  image: {image}
  cmd:
    - sh
    - -c
    - ls /pfs/copy | wc -l > /pfs/out/count
input:
  pfs:
    repo: copy
    glob: /
"""


def spec_files(image: str = "busybox:1.36.0", parallelism: int = 1,
               count: bool = True) -> dict[str, str]:
    files = {"specs/repos.yaml": REPOS,
             "specs/pipelines/copy.yaml": COPY.format(image=image, parallelism=parallelism)}
    if count:
        files["specs/pipelines/count.yaml"] = COUNT.format(image=image)
    return files


def make_gitops(tmp: Path, files: dict[str, str | None]) -> GitOps:
    """`tmp/remote.git` holding `files` in its first commit, "initial specs"."""
    ops = GitOps(tmp)
    ops.push(files, "initial specs")
    return ops


def sync(gitops: GitOps, address: str, tmp_path: Path, **options: Any) -> SyncResult:
    """One `sync_once` of the remote's main onto the pachd at `address` (cache in tmp_path)."""
    return sync_once(SyncOptions(source=str(gitops.remote), pachd=address,
                                 cache_dir=tmp_path / "cache", **options))
