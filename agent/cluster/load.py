"""Putting local data into an input repo: one commit, one atomic ModifyFile stream.

Called by the `load` and `demo` commands. A file lands at `/<dest>` (default: its base name); a
directory's files land under `/<dest>/<relative path>` (`--dest /` puts them at the root).
`split_lines` replaces Pachyderm 1.x's removed `put file --split line`: every line (newline kept)
becomes its own file named with 16 hex digits, `/c_parameters.txt/0000000000000000`,
`.../000000000000000a`, exactly as 1.x named them; the old chunks are deleted first.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.cluster.client import Connection, rpc_errors
from agent.errors import UsageError


@dataclass(frozen=True)
class LoadReport:
    repo: str
    commit: str
    files: tuple[str, ...]
    bytes: int


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their newline; a last line without one is kept; empty input gives []."""
    return data.splitlines(keepends=True)


def chunk_name(index: int) -> str:
    return f"{index:016x}"


def _dest_root(src: Path, dest: str | None) -> str:
    root = dest if dest is not None else src.name
    return posixpath.normpath("/" + root.strip()).replace("//", "/")


def plan_files(src: Path, dest: str | None, split: bool) -> Iterator[tuple[str, bytes | Path]]:
    """(repo path, content) for everything `src` holds, in a stable order. Whole files stay
    `Path`s (streamed from disk by the upload); split lines are `bytes`."""
    root = _dest_root(src, dest)
    if src.is_file():
        sources = [(root, src)]
    elif src.is_dir():
        sources = [(posixpath.join(root, p.relative_to(src).as_posix()), p)
                   for p in sorted(src.rglob("*")) if p.is_file()]
    else:
        raise UsageError(f"{src}: no such file or directory", hint="pass a file or a directory")
    for path, file in sources:
        if not split:
            yield path, file
            continue
        for i, line in enumerate(split_lines(file.read_bytes())):
            yield f"{path}/{chunk_name(i)}", line


def _size(content: bytes | Path) -> int:
    return content.stat().st_size if isinstance(content, Path) else len(content)


def load_path(conn: Connection, repo: str, src: Path, dest: str | None = None,
              split: bool = False, branch: str = "master", project: str = "default",
              ) -> LoadReport:
    """Upload `src` into `repo@branch` as one commit; returns what was written."""
    files = list(plan_files(src, dest, split))
    if not files:
        raise UsageError(f"{src}: nothing to load (no files)")
    client = conn.client
    with rpc_errors(f"starting a commit in repo {repo!r}", conn.target):
        commit = client.start_commit(repo, branch, project_name=project)
    try:
        with rpc_errors(f"writing {len(files)} file(s) into repo {repo!r}", conn.target):
            with client.modify_file_client(commit) as mfc:
                if split:
                    for top in sorted({p.rsplit("/", 1)[0] for p, _ in files}):
                        mfc.delete_file(top + "/")  # stale chunks of a longer earlier version
                for path, content in files:
                    if isinstance(content, Path):
                        mfc.put_file_from_filepath(path, str(content))
                    else:
                        mfc.put_file_from_bytes(path, content)
    finally:
        with rpc_errors(f"finishing the commit in repo {repo!r}", conn.target):
            client.finish_commit(commit)
    return LoadReport(repo, commit.id, tuple(p for p, _ in files),
                      sum(_size(c) for _, c in files))
