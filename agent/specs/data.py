"""Data declared in git: the files of the checkout that specs/repos.yaml keeps in an input repo.

Called by `agent.specs` while it loads repos.yaml; the result travels in `RepoSpec.data` to the
data planner (`agent.plan.data`). An entry of a repo's `data:` list names a file of the
checkout (`path`, relative to the folder holding specs/), where it goes in the repo (`to`) and
whether it is split into one file per line (`split: lines`). A line file is named by its
content (`agent.util.linefiles`), never by its line number, so inserting, removing or
reordering lines changes only the files of those lines, and Pachyderm re-runs only their datums.

The files come from pull requests, so they are read like the specs (`agent.specs.safefs`):
regular files inside the checkout only, never through a link, no `..` or absolute paths, and
bounded: `MAX_DATA_FILE_BYTES` per file, `MAX_DATA_BYTES` and `MAX_DATA_FILES` for all declared
data together (git is for small data such as parameter grids; load big data with `pachsync
load` or pachctl). Every problem is a `SpecError` at the line of repos.yaml that declares the
file (a repeated line: at that line of the data file).
"""

from __future__ import annotations

import errno
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import SpecError
from agent.specs.safefs import Unreadable, open_tree
from agent.specs.yamlread import LoadedYaml
from agent.util.linefiles import line_content, line_name, split_lines

MAX_DATA_FILE_BYTES = 16 * 2**20
MAX_DATA_BYTES = 32 * 2**20  # every declared file together (the agent keeps them in memory)
MAX_DATA_FILES = 10_000  # repo files, one per line of a split file
DATA_BRANCH = "master"  # the branch pipelines read by default
_CONTROL = re.compile("[\x00-\x1f\x7f]")
PATH_HINT = ("give a file of this checkout relative to the folder holding specs/, e.g. "
             "data/iris.csv (no leading /, no ..)")


@dataclass(frozen=True)
class DataFile:
    """One file git wants in a repo: `path` in the repo, the SHA-256 of its content, and where
    it comes from (`data/iris.csv`, or `data/parameters/c_parameters.txt:3` for a line)."""

    path: str
    digest: str
    source: str
    content: bytes = field(repr=False, compare=False)


@dataclass(frozen=True)
class RepoData:
    """Everything a repo's `data:` declares: its files by path and the directories that split
    files fill (pachsync warns about files it did not write in those)."""

    files: tuple[DataFile, ...] = ()
    dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataRoot:
    """Where git paths are resolved: `anchor` (trusted) and the folders below it, opened
    without following links; `shown` is how the anchor is named in messages."""

    anchor: str
    parts: tuple[str, ...]
    shown: str


@dataclass
class Budget:
    """What all declared data may still add up to (shared by every repo of one load)."""

    bytes: int = field(default_factory=lambda: MAX_DATA_BYTES)
    files: int = field(default_factory=lambda: MAX_DATA_FILES)


def declared_bytes(repos: Iterable[Any]) -> int:
    """The bytes of data the repos (`RepoSpec`s) declare: what a desired state holds in memory."""
    return sum(len(f.content) for r in repos if r.data is not None for f in r.data.files)


def make_file(path: str, content: bytes, source: str) -> DataFile:
    return DataFile(path, hashlib.sha256(content).hexdigest(), source, content)


def git_path_problem(text: str) -> str | None:
    """Why `text` cannot name a file of the checkout, or None."""
    if _CONTROL.search(text):
        return "contains a control character"
    if "\\" in text:
        return "contains a backslash: separate folders with /"
    if text.startswith("/"):
        return "is an absolute path: data comes from the checkout only"
    parts = text.split("/")
    if ".." in parts:
        return "goes up with '..': data comes from the checkout only"
    if text.endswith("/") or not [p for p in parts if p not in ("", ".")]:
        return "names a folder, not a file"
    return None


def dest_problem(to: str) -> str | None:
    """Why `to` cannot be a path in a repo, or None."""
    if _CONTROL.search(to):
        return "contains a control character"
    if not to.startswith("/"):
        return "must be an absolute path in the repo, e.g. /iris.csv"
    if any(p in (".", "..") for p in to.split("/")):
        return "contains a '.' or '..' segment"
    return None


def destination(source: str, to: str | None, split: bool) -> str:
    """The repo path of a declared file; a directory (for split, or `to` ending in /) ends
    with `/`."""
    base = [p for p in source.split("/") if p not in ("", ".")][-1]
    if to is None:
        return f"/{base}/" if split else f"/{base}"
    clean = "/" + "/".join(p for p in to.split("/") if p)
    if split:
        return clean.rstrip("/") + "/"
    if to.endswith("/"):
        return clean.rstrip("/") + "/" + base
    return clean


@dataclass(frozen=True)
class _Decl:
    source: str  # git path, cleaned
    dest: str  # repo path (a directory ends with /)
    split: bool
    line: int
    where: str  # spec path of the entry, e.g. repos[1].data[0]


def load_repo_data(doc: LoadedYaml, index: int, file: str, root: DataRoot | None,
                   budget: Budget) -> tuple[RepoData | None, list[SpecError]]:
    """The data repos[index] declares (None without a `data` key), and every problem found."""
    repo = doc.data["repos"][index]
    items = repo.get("data") if isinstance(repo, dict) else None
    if not isinstance(items, list):
        return None, []
    errors: list[SpecError] = []
    decls = [d for j, item in enumerate(items)
             if (d := _decl(doc, index, j, item, file, errors)) is not None]
    errors += _overlaps(decls, file)
    if root is None and decls:
        errors.append(SpecError(file, decls[0].line, f"{decls[0].where}.path",
                                "data paths are relative to the folder holding specs/, which "
                                "is outside the checkout", "move specs/ into a folder of the "
                                "repository (e.g. specs/ at its root)"))
        return RepoData(), errors
    files: list[DataFile] = []
    for d in decls if root is not None and not errors else []:
        assert root is not None
        files += _read_decl(d, file, root, budget, errors)
    paths: dict[str, str] = {}
    for f in files:
        if f.path in paths:
            errors.append(SpecError(file, 0, "", f"{f.source} and {paths[f.path]} both become "
                                    f"{f.path}", "declare each repo path once"))
        paths[f.path] = f.source
    dirs = tuple(sorted({d.dest for d in decls if d.split}))
    return RepoData(tuple(sorted(files, key=lambda f: f.path)), dirs), errors


def _decl(doc: LoadedYaml, index: int, j: int, item: Any, file: str,
          errors: list[SpecError]) -> _Decl | None:
    """One entry, checked; None (with an error unless the schema reports it) when unusable."""
    where = f"repos[{index}].data[{j}]"
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        return None  # the schema says what is wrong
    source, to, split = item["path"], item.get("to"), item.get("split") == "lines"
    line = doc.line_of(("repos", index, "data", j, "path"))
    problem = git_path_problem(source)
    if problem:
        errors.append(SpecError(file, line, f"{where}.path", f"{source!r} {problem}", PATH_HINT))
        return None
    if to is not None and not isinstance(to, str):
        return None
    if to is not None and (problem := dest_problem(to)):
        errors.append(SpecError(file, doc.line_of(("repos", index, "data", j, "to")),
                                f"{where}.to", f"{to!r} {problem}",
                                "write where the file goes in the repo, e.g. /iris.csv or "
                                "/c_parameters.txt/"))
        return None
    dest = destination(source, to, split)
    if dest == "/" and not split:
        errors.append(SpecError(file, line, f"{where}.to", "the repo root is a folder, not a "
                                "file", "end `to` with the file name, or with / to keep its "
                                "name inside a folder"))
        return None
    clean = "/".join(p for p in source.split("/") if p not in ("", "."))
    return _Decl(clean, dest, split, line, where)


def _overlaps(decls: list[_Decl], file: str) -> list[SpecError]:
    """Two entries writing the same place, or a file where another entry needs a folder."""
    errors = []
    for i, d in enumerate(decls):
        for e in decls[:i]:
            if _overlap(d.dest, e.dest):
                errors.append(SpecError(file, d.line, f"{d.where}.to", f"{d.dest} overlaps "
                                        f"{e.dest} of {e.where} (line {e.line})",
                                        "give each entry its own place in the repo"))
    return errors


def _overlap(a: str, b: str) -> bool:
    """The same place, or one needs a folder where the other is or holds a file."""
    fa, fb = (x if x.endswith("/") else x + "/" for x in (a, b))
    return fa == fb or a.startswith(fb) or b.startswith(fa)


def _read_decl(d: _Decl, file: str, root: DataRoot, budget: Budget,
               errors: list[SpecError]) -> list[DataFile]:
    content = _read(d, file, root, budget, errors)
    if content is None:
        return []
    if not d.split:
        return _counted([make_file(d.dest, content, d.source)], d, file, budget, errors)
    seen: dict[bytes, int] = {}
    out = []
    for number, value in split_lines(content):
        if value in seen:
            errors.append(SpecError(d.source, number, "", f"repeats line {seen[value]} "
                                    f"({value[:40].decode(errors='replace')!r}): a line file "
                                    "is named by its content, so both would be one file",
                                    "remove one of the two lines"))
            continue
        seen[value] = number
        out.append(make_file(d.dest + line_name(value), line_content(value),
                             f"{d.source}:{number}"))
    return _counted(out, d, file, budget, errors)


def _counted(files: list[DataFile], d: _Decl, file: str, budget: Budget,
             errors: list[SpecError]) -> list[DataFile]:
    budget.files -= len(files)
    if budget.files < 0:
        errors.append(SpecError(file, d.line, f"{d.where}.path", f"the declared data holds "
                                f"more than {MAX_DATA_FILES} repo files", "declare fewer lines "
                                "or files; load big data with `pachsync load` or pachctl"))
        return []
    return files


def _read(d: _Decl, file: str, root: DataRoot, budget: Budget,
          errors: list[SpecError]) -> bytes | None:
    """The bytes of a declared file, read like a spec (no links, regular files, capped)."""
    parts = d.source.split("/")
    cap = max(0, min(MAX_DATA_FILE_BYTES, budget.bytes))
    problem: tuple[str, str] | None = None
    content = None
    try:
        with open_tree(root.anchor, root.parts + tuple(parts[:-1]), root.shown) as folder:
            content = folder.read_bytes(parts[-1], cap=cap)
    except Unreadable as exc:
        problem = (f"{exc.where} {exc.message}", exc.hint)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            problem = (f"{d.source} cannot be read: {exc.strerror}", "check the checkout")
    if problem is None and content is None:
        problem = (f"{d.source}: no such file in the checkout",
                   "commit the file, or fix the path (relative to the folder holding specs/)")
    if problem is not None:
        message, hint = problem
        if "larger than" in message:
            message, hint = _too_large(d, cap)
        errors.append(SpecError(file, d.line, f"{d.where}.path", message, hint))
        return None
    assert content is not None
    budget.bytes -= len(content)
    return content


def _too_large(d: _Decl, cap: int) -> tuple[str, str]:
    limit = "the limit per file" if cap == MAX_DATA_FILE_BYTES else "what the declared data " \
        "may still add up to"
    return (f"{d.source} is larger than {cap // 2**20 if cap >= 2**20 else cap} "
            f"{'MiB' if cap >= 2**20 else 'bytes'}, {limit} (files in git: at most "
            f"{MAX_DATA_FILE_BYTES // 2**20} MiB each, {MAX_DATA_BYTES // 2**20} MiB together)",
            "keep small data in git; load big data with `pachsync load` or pachctl")
