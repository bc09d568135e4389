"""PURE data of data declared in git, as the cluster holds it: the manifest pachsync writes on its
data commits, what a repo holds now (`LiveData`) and one repo's write (`DataWrite`).

Produced by `agent.cluster.data` (observe and write), consumed by the pure data planner
(`agent.plan.data`) and `agent.sync`. Free of grpc/protobuf types, like `agent.cluster.model`.

Which files pachsync wrote is recorded in the repo itself, on the description of every data
commit it makes: a first line for people and a `pachsync.io/data-manifest:` line holding JSON
`{"v": 1, "source": ..., "commit": ..., "files": {repo path: sha256 of content}}` with EVERY
file this source keeps in the repo after that commit (not only the changed ones). The newest
such commit of this source on the branch tells what it wrote; files changed after it by
someone else show up in a DiffFile against it. Nothing is stored next to the data (a manifest
file would be seen by the pipelines' globs), and no state is kept by the agent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MANIFEST_KEY = "pachsync.io/data-manifest: "
PENDING_KEY = "pachsync.io/data-pending: "  # on a data commit until its files are written


@dataclass(frozen=True)
class Manifest:
    """Who wrote a data commit (source id, git commit) and every file it keeps (path -> SHA-256)."""

    source: str
    commit: str
    files: Mapping[str, str] = field(default_factory=dict)


def encode_manifest(m: Manifest) -> str:
    """The commit description of a data commit."""
    body = json.dumps({"v": 1, "source": m.source, "commit": m.commit,
                       "files": dict(sorted(m.files.items()))}, separators=(",", ":"))
    head = f"pachsync: data from git {m.commit[:12] or '(no commit)'}, {len(m.files)} file(s)"
    return f"{head}\n{MANIFEST_KEY}{body}"


def parse_manifest(description: str) -> Manifest | None:
    """The manifest in a commit description, or None (not a pachsync data commit, or garbled)."""
    for line in description.splitlines():
        if not line.startswith(MANIFEST_KEY):
            continue
        try:
            doc: Any = json.loads(line[len(MANIFEST_KEY):])
        except ValueError:
            return None
        files = doc.get("files") if isinstance(doc, dict) else None
        if doc.get("v") != 1 or not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            return None
        return Manifest(str(doc.get("source", "")), str(doc.get("commit", "")), dict(files))
    return None


def pending_description(source: str) -> str:
    return f"pachsync: writing data (unfinished)\n{PENDING_KEY}{source}"


def pending_source(description: str) -> str | None:
    """The source id of an unfinished pachsync data commit, or None."""
    for line in description.splitlines():
        if line.startswith(PENDING_KEY):
            return line[len(PENDING_KEY):].strip()
    return None


@dataclass(frozen=True)
class LiveData:
    """One repo's branch as the data planner needs it.

    `manifest`: what this source's newest finished data commit on the branch (`ours`) keeps
    there (None: it never wrote here). `changed` / `deleted`: paths of that manifest that
    someone else changed / deleted since. `open_commit`: an unfinished data commit of ours (a write
    interrupted after its commit started): the next write goes into it. `listing`: the files at
    the head under the declared places (path -> Pachyderm's hash), only when looked up (before
    a write: to show what is replaced and which files pachsync did not write). `missing`: the
    repo does not exist yet. `searched`: how many commits were read to find ours."""

    repo: str
    project: str = "default"
    branch: str = "master"
    head: str = ""
    ours: str = ""
    manifest: Manifest | None = None
    changed: frozenset[str] = frozenset()
    deleted: frozenset[str] = frozenset()
    open_commit: str = ""
    listing: Mapping[str, str] | None = None
    missing: bool = False
    searched: int = 0


@dataclass(frozen=True)
class DataWrite:
    """One commit into one repo: files to put (path -> content), paths to delete, and the
    description (the manifest) that records what pachsync keeps there afterwards.
    `into`: an unfinished commit of ours to write into instead of starting one."""

    repo: str
    project: str
    branch: str
    puts: tuple[tuple[str, bytes], ...]
    deletes: tuple[str, ...]
    description: str
    source: str
    into: str = ""
