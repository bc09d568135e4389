"""PURE datum computation: glob matching, input combination, datum IDs and hashes.

Called by `localpachd.jobs` (to plan a job's datums) and `localpachd.pps` (ListDatum by input).
No I/O: the caller passes a `lister` that returns the files of one pfs input's commit.

Semantics follow Pachyderm 2.7 (see reference/pachyderm/SEMANTICS.md):
- a glob matches files *and* directories; directory datums bring their whole subtree;
  `/` is the whole repo as one datum (path `/`), directory paths end with `/` like FileInfo paths;
- cross = cartesian product, union = concatenation, join = rows sharing a `join_on` key
  (inputs with `outer_join` keep their unmatched rows), group = one datum per `group_by` key;
- datum ID = BLAKE2b-256 over each input's (name, repo, branch, path), each length-suffixed;
  datum hash = BLAKE2b-256 over (datum ID, each input's content hash, salt).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localpachd import globs
from localpachd.errors import InvalidArgument


@dataclass(frozen=True)
class RepoFile:
    """One file of an input commit."""

    path: str  # "/a/b.txt"
    hash: str  # content hash (hex)
    size: int = 0


@dataclass(frozen=True)
class InputSource:
    """The resolved commit of one pfs input: what the lister returns."""

    commit: str
    files: tuple[RepoFile, ...]


@dataclass(frozen=True)
class DatumInput:
    """One input's contribution to a datum (Pachyderm's common.Input + FileInfo)."""

    name: str
    project: str
    repo: str
    branch: str
    commit: str
    path: str  # matched path as FileInfo reports it: "/f.txt", "/dir/", or "/"
    hash: str  # content hash of the matched file or directory
    files: tuple[RepoFile, ...] = field(default=(), compare=False)  # files laid out for it
    glob: str = ""
    join_on: str = ""
    group_by: str = ""
    outer_join: bool = False

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Datum:
    inputs: tuple[DatumInput, ...]

    @property
    def id(self) -> str:
        return datum_id(self.inputs)

    def hash(self, salt: str) -> str:
        return datum_hash(self.inputs, salt)


Lister = Callable[[Mapping[str, Any]], InputSource]


class DatumError(ValueError):
    """An input spec that cannot produce datums (bad glob, unknown input type)."""


def _h() -> Any:
    return hashlib.blake2b(digest_size=32)


def _write_len(h: Any, s: str) -> None:
    b = s.encode()
    h.update(b)
    h.update(len(b).to_bytes(8, "big", signed=True))


def datum_id(inputs: Sequence[DatumInput]) -> str:
    h = _h()
    for inp in inputs:
        for part in (inp.name, inp.repo, inp.branch, inp.path):
            _write_len(h, part)
    return str(h.hexdigest())


def datum_hash(inputs: Sequence[DatumInput], salt: str) -> str:
    h = _h()
    h.update(datum_id(inputs).encode())
    for inp in inputs:
        h.update(inp.hash.encode())
    h.update(salt.encode())
    return str(h.hexdigest())


clean_glob = globs.clean_glob  # one cleaner for datum globs and GlobFile (pps_spec uses it too)


def compile_glob(glob: str) -> globs.Glob:
    """A pfs input's glob, cleaned and compiled: the very matcher GlobFile uses, as Pachyderm
    lists datums with GlobFile. An invalid glob is a DatumError."""
    try:
        return globs.compile_glob(globs.clean_glob(glob))
    except InvalidArgument as exc:
        raise DatumError(exc.message) from exc


def _dirs_of(files: Sequence[RepoFile]) -> set[str]:
    dirs: set[str] = set()
    for f in files:
        parts = f.path.strip("/").split("/")[:-1]
        for k in range(1, len(parts) + 1):
            dirs.add("/" + "/".join(parts[:k]))
    return dirs


def _dir_hash(files: Sequence[RepoFile], base: str) -> str:
    h = _h()
    for f in sorted(files, key=lambda f: f.path):
        _write_len(h, f.path[len(base) :])
        _write_len(h, f.hash)
    return str(h.hexdigest())


def expand_key(template: str, groups: Sequence[str]) -> str:
    """Expand `$0` (the matched path), `$1`, `$2`… of a join_on/group_by template with the
    glob's capture groups (`groups[0]` is the path; a group that does not exist is empty)."""

    def sub(m: re.Match[str]) -> str:
        k = int(m.group(1))
        return groups[k] if k < len(groups) else ""

    return re.sub(r"\$(\d+)", sub, template)


def glob_matches(pfs: Mapping[str, Any], src: InputSource) -> list[DatumInput]:
    """Every file or directory of `src` matched by the pfs input's glob, in path order."""
    matcher = compile_glob(str(pfs.get("glob", "")))
    glob = matcher.pattern

    def make(
        path: str, digest: str, sub: tuple[RepoFile, ...], m: tuple[str, ...] | None
    ) -> DatumInput:
        return DatumInput(
            name=str(pfs.get("name") or pfs.get("repo", "")),
            project=str(pfs.get("project") or "default"),
            repo=str(pfs.get("repo", "")),
            branch=str(pfs.get("branch") or "master"),
            commit=src.commit,
            path=path,
            hash=digest,
            files=sub,
            glob=glob,
            join_on=expand_key(str(pfs.get("join_on", "")), m) if m is not None else "",
            group_by=expand_key(str(pfs.get("group_by", "")), m) if m is not None else "",
            outer_join=bool(pfs.get("outer_join", False)),
        )

    files = sorted(src.files, key=lambda f: f.path)
    if glob == "/":
        # The whole repo is one datum; an empty commit has none (nothing to process).
        return [make("/", _dir_hash(files, "/"), tuple(files), None)] if files else []
    by_path = {f.path: f for f in files}
    found: list[DatumInput] = []
    for cand in sorted(set(by_path) | _dirs_of(files)):
        groups = matcher.captures(cand)
        if groups is None:
            continue
        m = (cand, *groups)
        if cand in by_path:
            found.append(make(cand, by_path[cand].hash, (by_path[cand],), m))
        else:
            prefix = cand + "/"
            sub = tuple(f for f in files if f.path.startswith(prefix))
            found.append(make(prefix, _dir_hash(sub, prefix), sub, m))
    return found


def input_kind(inp: Mapping[str, Any]) -> str:
    kinds = [k for k in INPUT_KINDS if inp.get(k)]
    if len(kinds) != 1:
        raise DatumError(f"an input must set exactly one of {'/'.join(INPUT_KINDS)}, got {kinds}")
    return kinds[0]


def compute_datums(inp: Mapping[str, Any] | None, lister: Lister) -> list[Datum]:
    """All datums of an input tree (snake_case dict as in a pipeline spec)."""
    if not inp:
        return []
    kind = input_kind(inp)
    combine = DATUMS_OF.get(kind)
    if combine is None:
        raise DatumError(f"input type {kind!r} is not supported by localpachd")
    return combine(inp[kind], lister)


def _pfs(pfs: Any, lister: Lister) -> list[Datum]:
    return [Datum((d,)) for d in glob_matches(pfs, lister(pfs))]


def cron_as_pfs(cron: Mapping[str, Any]) -> dict[str, Any]:
    """A cron input read as Pachyderm 2.7 reads it: a pfs input on its repo's master, glob `/*`
    (one datum per tick file)."""
    return {
        "name": cron.get("name", ""),
        "project": cron.get("project") or "",
        "repo": cron.get("repo", ""),
        "branch": "master",
        "glob": "/*",
    }


def _cron(cron: Any, lister: Lister) -> list[Datum]:
    return _pfs(cron_as_pfs(cron), lister)


def _union(children: Sequence[Mapping[str, Any]], lister: Lister) -> list[Datum]:
    return [d for c in children for d in compute_datums(c, lister)]


def _cross(children: Sequence[Mapping[str, Any]], lister: Lister) -> list[Datum]:
    parts = [compute_datums(c, lister) for c in children]
    return [Datum(tuple(i for d in combo for i in d.inputs)) for combo in itertools.product(*parts)]


def _keyed(children: Sequence[Mapping[str, Any]], lister: Lister, attr: str) -> list[list[Datum]]:
    out = []
    for c in children:
        ds = compute_datums(c, lister)
        out.append(ds)
        for d in ds:
            if len(d.inputs) != 1:
                raise DatumError(f"{attr} inputs must be pfs inputs")
    return out


def _join(children: Sequence[Mapping[str, Any]], lister: Lister) -> list[Datum]:
    per_child = _keyed(children, lister, "join")
    index: list[dict[str, list[DatumInput]]] = []
    for ds in per_child:
        idx: dict[str, list[DatumInput]] = {}
        for d in ds:
            idx.setdefault(d.inputs[0].join_on, []).append(d.inputs[0])
        index.append(idx)
    keys = sorted({k for idx in index for k in idx})
    result: list[Datum] = []
    for key in keys:
        present = [idx.get(key, []) for idx in index]
        if all(present):
            groups = present
        elif any(rows and rows[0].outer_join for rows in present):
            groups = [rows for rows in present if rows]
        else:
            continue
        for combo in itertools.product(*groups):
            result.append(Datum(tuple(combo)))
    return result


def _group(children: Sequence[Mapping[str, Any]], lister: Lister) -> list[Datum]:
    per_child = _keyed(children, lister, "group")
    groups: dict[str, list[DatumInput]] = {}
    for ds in per_child:
        for d in ds:
            groups.setdefault(d.inputs[0].group_by, []).append(d.inputs[0])
    return [Datum(tuple(groups[k])) for k in sorted(groups)]


# The input kinds, in one place: a leaf kind holds one input's spec, a composite kind a list of
# child inputs. `pps_spec` (validation, defaults), `pps.servicer` and `pfs_inputs` walk the tree
# through these names. A new kind: its name here and its datum function in DATUMS_OF (plus its
# validation in `pps_spec._validate_input`); cron reads as a pfs input (`cron_as_pfs`).
LEAF_KINDS = ("pfs", "cron")
COMPOSITE_KINDS = ("cross", "union", "join", "group")
INPUT_KINDS = LEAF_KINDS + COMPOSITE_KINDS
DATUMS_OF: dict[str, Callable[[Any, Lister], list[Datum]]] = {
    "pfs": _pfs,
    "cron": _cron,
    "cross": _cross,
    "union": _union,
    "join": _join,
    "group": _group,
}


def pfs_inputs(inp: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """Every pfs input of a tree, depth first, a cron input as the pfs input it reads
    (used for provenance and env)."""
    if not inp:
        return []
    if inp.get("pfs"):
        return [inp["pfs"]]
    if inp.get("cron"):
        return [cron_as_pfs(inp["cron"])]
    out: list[Mapping[str, Any]] = []
    for k in COMPOSITE_KINDS:
        for c in inp.get(k) or []:
            out.extend(pfs_inputs(c))
    return out


@dataclass(frozen=True)
class JobPlan:
    """Which datums of a job run and which it skips, with every datum's hash."""

    hashes: dict[str, str]  # datum ID -> hash (inputs' content + salt)
    skipped: list[Datum]  # in the order of the job's datums
    todo: list[Datum]


def plan_job(
    datums: Sequence[Datum], salt: str, done: Mapping[str, str], every_job: bool = False
) -> JobPlan:
    """Pachyderm 2.x's skip rule. `done` maps the datums that succeeded (or were skipped) in the
    last successful job of the pipeline to their hashes. A datum is skipped when a done datum
    has its ID and its hash (same inputs, same content, same salt), unless the pipeline
    reprocesses every job (`reprocess_spec: every_job`); every other datum runs."""
    hashes = {d.id: d.hash(salt) for d in datums}
    skipped = [] if every_job else [d for d in datums if done.get(d.id) == hashes[d.id]]
    skipped_ids = {d.id for d in skipped}
    return JobPlan(hashes, skipped, [d for d in datums if d.id not in skipped_ids])


def check_duplicate_outputs(outputs: Mapping[str, Sequence[str]]) -> str | None:
    """Pachyderm's validation of a job's output: datum ID -> output paths; message or None."""
    rows = sorted((path, did) for did, paths in outputs.items() for path in paths)
    for (p_path, p_did), (c_path, c_did) in zip(rows, rows[1:], strict=False):
        if c_path == p_path:
            return (
                f"duplicate path output by different datums "
                f"({p_path} from {p_did} and {c_path} from {c_did})"
            )
        if c_path.startswith(p_path + "/"):
            return f"file / directory path collision ({c_path})"
    return None
