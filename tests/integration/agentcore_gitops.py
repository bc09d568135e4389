"""Helpers for the agent-core integration tests: a GitOps repo with a bare remote, tiny shell
pipelines, and waiting for jobs. Imported by tests/integration/test_agent_*.py.

The pipelines are `sh` one-liners so a full run takes a fraction of a second: `copy` (one datum
per file of `raw`) and `count` (one datum over all of copy's output).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from helpers.gitops import GitOps
from python_pachyderm.proto.v2.pps import pps_pb2

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

TERMINAL = {"JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE"}


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


def wait_jobs(client: Any, names: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """Newest JobInfo per pipeline once every one of them is finished."""
    deadline = time.monotonic() + timeout
    while True:
        newest = {}
        for name in names:
            jobs = list(client.list_job(pipeline_name=name))
            if jobs:
                newest[name] = max(jobs, key=lambda j: (j.created.seconds, j.created.nanos))
        if len(newest) == len(names) and all(
                pps_pb2.JobState.Name(j.state) in TERMINAL for j in newest.values()):
            return newest
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not finished in {timeout}s: "
                                 f"{ {n: j.state for n, j in newest.items()} }")
        time.sleep(0.1)


def put_files(client: Any, repo: str, files: dict[str, bytes]) -> None:
    with client.commit(repo, "master") as c:
        for path, data in files.items():
            client.put_file_bytes(c, path, data)
