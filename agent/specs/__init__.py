"""The desired state: loads `specs/` (repos.yaml + pipelines/*.yaml), validates it, types it.
A repo of repos.yaml may declare files of the checkout to keep in it (`data:`): they are read
here too (`agent.specs.data`, same rules as the specs) and travel in `RepoSpec.data`.

Contract C1, used by `pachsync validate`, plan, the sync loop, bump-image and report:
`validate_specs(dir)` returns every problem as `SpecError(file, line, path, message, hint)` and
never raises for bad specs; `load_desired(dir)` returns a `DesiredState` (pipelines upstream
first) or raises `SpecInvalid`. Checks run in two passes: JSON Schema per document
(`agent.specs.schema`, our strict profile in `schemas/`), then cross-document semantics
(`agent.specs.semantic`, `.graph`) and Pachyderm's apply-time limits (`agent.specs.limits`).
Warnings (e.g. a `salt`) come from `check_specs`.

The specs come from pull requests, so reading them is bounded too: files are read only as
regular files inside the checkout, never through a link (`agent.specs.safefs`), at most 1 MiB
each; YAML is bounded in depth, nodes and alias expansion (`agent.specs.yamlread`); and at most
`MAX_ERRORS_PER_FILE` errors per file are reported, each clipped to a few hundred characters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from agent.errors import SpecError, SpecInvalid
from agent.specs.data import Budget, DataRoot, RepoData, load_repo_data
from agent.specs.graph import check_graph
from agent.specs.limits import limit_errors, limit_warnings, request_size_errors
from agent.specs.safefs import CheckoutDir, Unreadable, open_tree
from agent.specs.schema import clip, dotted, schema_errors
from agent.specs.semantic import PipelineDoc, check_pipeline, input_repos, warnings_for
from agent.specs.yamlread import LoadedYaml, YamlProblem, load_yaml

__all__ = [
    "DesiredState",
    "PipelineSpec",
    "RepoData",
    "RepoSpec",
    "SpecReport",
    "check_specs",
    "load_desired",
    "validate_specs",
]

REPOS_FILE = "repos.yaml"
PIPELINES_DIR = "pipelines"
MAX_ERRORS_PER_FILE = 100
MAX_SPECS_BYTES = 32 * 2**20  # all of pipelines/ together; one transaction carries 20 MiB


@dataclass(frozen=True)
class RepoSpec:
    """An input repo from specs/repos.yaml; `data`: the files of the checkout it declares
    (`agent.specs.data`), None when it has no `data` key (its files are then left alone)."""

    name: str
    description: str = ""
    project: str = "default"
    data: RepoData | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """One specs/pipelines/<name>.yaml."""

    name: str  # == pipeline.name == file stem
    file: str  # relative to the repo root, e.g. "specs/pipelines/model.yaml"
    spec: dict[str, Any]  # the YAML document as loaded (snake_case keys)
    inputs: tuple[str, ...]  # repos/pipelines this pipeline reads (pfs input repos)


@dataclass(frozen=True)
class DesiredState:
    repos: tuple[RepoSpec, ...]
    pipelines: tuple[PipelineSpec, ...]  # topological order, upstream first


@dataclass(frozen=True)
class SpecReport:
    """Everything `check_specs` found: errors block applying, warnings do not."""

    errors: tuple[SpecError, ...] = ()
    warnings: tuple[SpecError, ...] = ()
    state: DesiredState | None = None  # set exactly when there are no errors
    files: tuple[str, ...] = field(default=())  # every file checked


def validate_specs(specs_dir: Path, root: Path | None = None) -> list[SpecError]:
    """Every error in `specs_dir`, sorted by file and line; [] when the specs are valid."""
    return list(check_specs(specs_dir, root).errors)


def load_desired(specs_dir: Path, root: Path | None = None) -> DesiredState:
    """The validated desired state; raises `SpecInvalid` listing every error otherwise."""
    report = check_specs(specs_dir, root)
    if report.errors or report.state is None:
        raise SpecInvalid(list(report.errors))
    return report.state


def check_specs(specs_dir: Path, root: Path | None = None) -> SpecReport:
    """Loads and checks everything; `root` (default: the parent of specs_dir) anchors file names.

    Everything below `root` is read through `agent.specs.safefs`: regular files only, never
    through a link (the specs folder and pipelines/ included), at most 1 MiB per file."""
    anchor, parts, shown = _place(Path(specs_dir), root)
    try:
        folder = open_tree(anchor, parts, shown)
    except Unreadable as exc:
        return SpecReport(errors=(_unreadable(exc),))
    except OSError:
        where = "/".join(p for p in (shown.rstrip("/"), *parts) if p) or "."
        problem = SpecError(
            where,
            0,
            "",
            "specs directory not found",
            "point --specs DIR (or --specs-path in a --source repo) at the folder holding "
            "repos.yaml and pipelines/",
        )
        return SpecReport(errors=(problem,))
    with folder:
        return _check_folder(folder, DataRoot(anchor, parts[:-1], shown) if parts else None)


def _place(specs_dir: Path, root: Path | None) -> tuple[str, tuple[str, ...], str]:
    """(trusted anchor, folders below it to open without following links, the anchor's name in
    messages). The anchor is `root` when the specs are inside it, else the specs' parent."""
    target = Path(os.path.abspath(specs_dir))
    base = Path(os.path.abspath(root)) if root is not None else target.parent
    try:
        return str(base), target.relative_to(base).parts, ""
    except ValueError:
        return str(target.parent), (target.name,), target.parent.as_posix()


def _check_folder(folder: CheckoutDir, data_root: DataRoot | None) -> SpecReport:
    errors: list[SpecError] = []
    repos_file = folder.path_of(REPOS_FILE)
    repos = _load_repos(folder, errors, data_root)
    docs, unparsed, json_files, found = _load_pipelines(folder, errors)
    for doc in docs:
        errors.extend(check_pipeline(doc))
        errors.extend(limit_errors(doc))
    errors.extend(check_graph(docs, repos.lines, repos_file, unparsed, check_repos=repos.parsed))
    errors.extend(request_size_errors(docs))
    warnings = [w for doc in docs for w in warnings_for(doc) + limit_warnings(doc)]
    warnings += [_json_warning(file) for file in json_files]
    if not docs and not unparsed and found:
        warnings.append(
            SpecError(
                folder.path_of(PIPELINES_DIR),
                0,
                "",
                "no pipeline specs found",
                "add pipelines/<name>.yaml; applying this prunes nothing "
                "unless --prune --allow-empty is given",
            )
        )
    files = tuple([repos_file] if repos.present else []) + tuple(d.file for d in docs)
    errors = _bounded(errors)
    state = None if errors else DesiredState(tuple(repos.repos), _ordered(docs))
    return SpecReport(tuple(errors), tuple(_clip(w) for w in warnings), state, files)


def _bounded(errors: list[SpecError]) -> list[SpecError]:
    """Sorted, without repeats, clipped, and at most MAX_ERRORS_PER_FILE per file (a hostile
    file can have thousands; the first ones say what is wrong)."""
    ordered = sorted(set(errors), key=lambda e: (e.file, e.line, e.path, e.message))
    out: list[SpecError] = []
    per_file: dict[str, int] = {}
    for error in ordered:
        count = per_file[error.file] = per_file.get(error.file, 0) + 1
        if count <= MAX_ERRORS_PER_FILE:
            out.append(_clip(error))
        elif count == MAX_ERRORS_PER_FILE + 1:
            more = sum(1 for e in ordered if e.file == error.file) - MAX_ERRORS_PER_FILE
            out.append(SpecError(error.file, error.line, "", f"... and {more} more errors in "
                                 "this file", "fix the errors above first"))
    return out


def _clip(error: SpecError) -> SpecError:
    return SpecError(clip(error.file, 300), error.line, clip(error.path, 200),
                     clip(error.message, 400), clip(error.hint, 600))


def _json_warning(file: str) -> SpecError:
    return SpecError(
        file,
        0,
        "",
        "JSON specs are not read: pachsync reads pipelines/*.yaml",
        "convert it to YAML (same snake_case keys) or move it out of pipelines/",
    )


def _unreadable(exc: Unreadable) -> SpecError:
    return SpecError(exc.where, exc.line, "", exc.message, exc.hint)


def _read(
    folder: CheckoutDir, name: str, errors: list[SpecError], budget: list[int] | None = None
) -> LoadedYaml | None:
    """The YAML document in `name`, or None (an error is added unless it does not exist).
    `budget` holds the bytes the folder's files may still add up to."""
    file = folder.path_of(name)
    if budget is not None and budget[0] < 0:
        return None  # over the budget: reported once, at the file that crossed it
    try:
        text = folder.read_text(name)
    except Unreadable as exc:
        errors.append(_unreadable(exc))
        return None
    if text is None:
        return None
    if budget is not None:
        budget[0] -= len(text)
        if budget[0] < 0:
            errors.append(SpecError(file, 0, "", f"the pipeline specs add up to more than "
                                    f"{MAX_SPECS_BYTES // 2**20} MiB; this file and the ones "
                                    "after it are not read", "Pachyderm applies them in one "
                                    "20 MiB transaction: keep specs small"))
            return None
    try:
        doc = load_yaml(text)
    except YamlProblem as exc:
        errors.append(
            SpecError(
                file,
                exc.line,
                dotted(exc.path),
                exc.message,
                exc.hint or "fix the YAML syntax (indentation, quotes, colons) at that line",
            )
        )
        return None
    if doc.data is None:
        errors.append(SpecError(file, 1, "", "file is empty", "write a spec or delete the file"))
        return None
    return doc


def _load_repos(folder: CheckoutDir, errors: list[SpecError], data_root: DataRoot | None
                ) -> _Repos:
    file = folder.path_of(REPOS_FILE)
    before = len(errors)
    doc = _read(folder, REPOS_FILE, errors)
    if doc is None:
        # no file: no input repos declared, inputs must then all be pipelines
        unreadable = len(errors) > before
        return _Repos(parsed=not unreadable, present=unreadable)
    problems = schema_errors("repos", doc, file)
    errors.extend(problems)
    found = _Repos(parsed=not problems)
    budget = Budget()
    items = doc.data.get("repos") if isinstance(doc.data, dict) else None
    for index, item in enumerate(items if isinstance(items, list) else []):
        # Entries with errors still declare their name, so inputs do not cascade into errors.
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        project = str(item.get("project") or "default")
        data, data_errors = load_repo_data(doc, index, file, data_root, budget) \
            if not problems else (None, [])
        errors.extend(data_errors)
        repo = RepoSpec(item["name"], str(item.get("description") or ""), project, data)
        key, line = (repo.project, repo.name), doc.line_of(("repos", index, "name"))
        if key in found.lines:
            errors.append(
                SpecError(
                    file,
                    line,
                    f"repos[{index}].name",
                    f"repo {repo.name!r} is declared twice (also line {found.lines[key]})",
                    "remove one of the two entries",
                )
            )
            continue
        found.lines[key] = line
        found.repos.append(repo)
    return found


@dataclass
class _Repos:
    """What repos.yaml declared; `parsed` is False when the file was unreadable as YAML."""

    repos: list[RepoSpec] = field(default_factory=list)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)
    parsed: bool = True
    present: bool = True


def _load_pipelines(
    folder: CheckoutDir, errors: list[SpecError]
) -> tuple[list[PipelineDoc], frozenset[tuple[str, str]], list[str], bool]:
    """The documents that parsed, the names promised by the files that did not, the JSON files
    (not read), and whether pipelines/ exists at all."""
    try:
        pipelines = folder.subdir(PIPELINES_DIR)
    except Unreadable as exc:
        errors.append(_unreadable(exc))
        return [], frozenset(), [], False
    if pipelines is None:
        return [], frozenset(), [], True
    docs, unparsed, json_files = [], set(), []
    with pipelines:
        try:
            entries = pipelines.entries()
        except Unreadable as exc:
            errors.append(_unreadable(exc))
            entries = []
        budget = [MAX_SPECS_BYTES]
        for entry in entries:
            stem, _, suffix = entry.name.rpartition(".")
            if suffix == "json":
                json_files.append(pipelines.path_of(entry.name))
            if suffix not in ("yaml", "yml") or not stem:
                continue
            doc = _read(pipelines, entry.name, errors, budget)
            if doc is None:
                unparsed.add(("default", stem))
                continue
            file = pipelines.path_of(entry.name)
            errors.extend(schema_errors("pipeline", doc, file))
            docs.append(PipelineDoc(file=file, stem=stem, doc=doc))
    return docs, frozenset(unparsed), json_files, True


def _ordered(docs: list[PipelineDoc]) -> tuple[PipelineSpec, ...]:
    """Upstream first, in waves (every pipeline whose inputs are all placed), each wave sorted
    by name so the order is stable across runs."""
    specs = {}
    for doc in docs:
        names = tuple(dict.fromkeys(repo for _, _, repo in input_repos(doc.doc.data)))
        specs[doc.name] = PipelineSpec(doc.name, doc.file, doc.doc.data, names)
    graph = TopologicalSorter({name: [i for i in spec.inputs if i in specs]
                               for name, spec in specs.items()})
    try:
        graph.prepare()
    except CycleError:  # unreachable after check_graph; stay total anyway
        return tuple(specs[name] for name in sorted(specs))
    order: list[PipelineSpec] = []
    while graph.is_active():
        ready = sorted(graph.get_ready())
        order += [specs[name] for name in ready]
        graph.done(*ready)
    return tuple(order)
