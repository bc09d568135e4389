"""Putting local data into an input repo: one commit, one atomic ModifyFile stream.

Called by the `load` command. A file lands at `/<dest>` (default: its base name); a directory's
files land under `/<dest>/<relative path>` (`--dest /` puts them at the root). `split` replaces
Pachyderm 1.x's removed `put file --split line`: every non-blank line becomes its own file, named
by its content (`agent.util.linefiles`: `/c_parameters.txt/0.5`), so reloading a file with one
value inserted writes one new file and Pachyderm re-runs only its datums; `names="index"` keeps
1.x's names instead (16 hex digits of the line number, `/c_parameters.txt/000000000000000a`).
The old line files are deleted first.

`glob_check` tells whether the pipelines reading the repo would see what a load writes (the bug
it catches: `load parameters data/parameters --split-lines` wrote /parameters/c_parameters.txt/...
which the globs /c_parameters.txt/* never match, so model silently had 0 datums).
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.cluster.client import Connection, rpc_errors
from agent.cluster.model import LivePipeline
from agent.errors import UsageError
from agent.util.globs import datum_roots
from agent.util.inputs import walk_pfs
from agent.util.linefiles import line_content, line_name
from agent.util.linefiles import split_lines as values_of


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


def line_files(data: bytes, names: str = "content") -> list[tuple[str, bytes]]:
    """(file name, content) per line: by content (blank lines skipped, a repeated value kept
    once), or with `names="index"` by line number as Pachyderm 1.x did."""
    if names == "index":
        return [(chunk_name(i), line) for i, line in enumerate(split_lines(data))]
    out = {line_name(value): line_content(value) for _, value in values_of(data)}
    return list(out.items())


def _kind(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a directory; None if missing."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"path that cannot be read ({exc.strerror})"
    kinds = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
             (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _dest_root(src: Path, dest: str | None) -> str:
    root = dest if dest is not None else src.name
    return posixpath.normpath("/" + root.strip()).replace("//", "/")


def plan_files(src: Path, dest: str | None, split: bool, names: str = "content"
               ) -> Iterator[tuple[str, bytes | Path]]:
    """(repo path, content) for everything `src` holds, in a stable order. Whole files stay
    `Path`s (streamed from disk by the upload); split lines are `bytes`."""
    root = _dest_root(src, dest)
    if src.is_file():
        sources = [(root, src)]
    elif src.is_dir():
        sources = [(posixpath.join(root, p.relative_to(src).as_posix()), p)
                   for p in sorted(src.rglob("*")) if p.is_file()]
    elif (kind := _kind(src)) is not None:
        raise UsageError(f"{src}: is a {kind}, not a regular file or a directory",
                         hint="pass a regular file or a directory to load")
    else:
        raise UsageError(f"{src}: no such file or directory", hint="pass a file or a directory")
    for path, file in sources:
        if not split:
            yield path, file
            continue
        for name, content in line_files(file.read_bytes(), names):
            yield f"{path}/{name}", content


def _size(content: bytes | Path) -> int:
    return content.stat().st_size if isinstance(content, Path) else len(content)


def load_path(conn: Connection, repo: str, src: Path, dest: str | None = None,
              split: bool = False, branch: str = "master", project: str = "default",
              names: str = "content") -> LoadReport:
    """Upload `src` into `repo@branch` as one commit; returns what was written."""
    files = list(plan_files(src, dest, split, names))
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


@dataclass(frozen=True)
class GlobCheck:
    """Which input globs of the pipelines reading a repo see the paths of a load."""

    readers: tuple[tuple[str, str], ...]  # (pipeline, glob) of every pfs input on the repo
    seeing: tuple[tuple[str, str, int], ...]  # (pipeline, glob, datums) that see a loaded path

    @property
    def unseen(self) -> bool:
        """Pipelines read the repo, and none of their globs sees anything of the load."""
        return bool(self.readers) and not self.seeing


def glob_check(pipelines: Iterable[LivePipeline], repo: str, project: str,
               paths: Iterable[str]) -> GlobCheck:
    """Pure: the pfs inputs on `repo` (in `project`) of the live pipelines, and the datums each
    glob would make of the loaded `paths`."""
    paths = list(paths)
    readers, seeing = [], []
    for p in pipelines:
        for _, pfs in walk_pfs(p.spec.get("input")):
            in_project = str(pfs.get("project") or p.project or "default")
            if pfs.get("repo") != repo or in_project != project:
                continue
            glob = str(pfs.get("glob") or "")
            readers.append((p.name, glob))
            roots = datum_roots(glob, paths)
            if roots:
                seeing.append((p.name, glob, len(roots)))
    return GlobCheck(tuple(readers), tuple(seeing))
