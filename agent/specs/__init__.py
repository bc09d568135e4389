"""The desired state: loads `specs/` (repos.yaml + pipelines/*.yaml), validates it, types it.

Contract C1, used by `pachsync validate`, plan, the sync loop, bump-image and report:
`validate_specs(dir)` returns every problem as `SpecError(file, line, path, message, hint)` and
never raises for bad specs; `load_desired(dir)` returns a `DesiredState` (pipelines upstream
first) or raises `SpecInvalid`. Checks run in two passes: JSON Schema per document
(`agent.specs.schema`, our strict profile in `schemas/`), then cross-document semantics
(`agent.specs.semantic`). Warnings (e.g. a `salt`) come from `check_specs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import SpecError, SpecInvalid
from agent.specs.graph import check_graph
from agent.specs.schema import schema_errors
from agent.specs.semantic import PipelineDoc, check_pipeline, input_repos, warnings_for
from agent.specs.yamlread import LoadedYaml, YamlProblem, load_yaml

__all__ = [
    "DesiredState",
    "PipelineSpec",
    "RepoSpec",
    "SpecReport",
    "check_specs",
    "load_desired",
    "validate_specs",
]

REPOS_FILE = "repos.yaml"
PIPELINES_DIR = "pipelines"


@dataclass(frozen=True)
class RepoSpec:
    """An input repo from specs/repos.yaml."""

    name: str
    description: str = ""
    project: str = "default"


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
    """Loads and checks everything; `root` (default: the parent of specs_dir) anchors file names."""
    specs_dir = Path(specs_dir)
    base = Path(root) if root is not None else specs_dir.resolve().parent

    def rel(path: Path) -> str:
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    if not specs_dir.is_dir():
        problem = SpecError(
            rel(specs_dir),
            0,
            "",
            "specs directory not found",
            "point --specs DIR (or --specs-path in a --source repo) at the folder holding "
            "repos.yaml and pipelines/",
        )
        return SpecReport(errors=(problem,))
    errors: list[SpecError] = []
    repos_path = specs_dir / REPOS_FILE
    repos = _load_repos(repos_path, rel(repos_path), errors)
    docs, unparsed = _load_pipelines(specs_dir / PIPELINES_DIR, rel, errors)
    for doc in docs:
        errors.extend(check_pipeline(doc))
    errors.extend(
        check_graph(docs, repos.lines, rel(repos_path), unparsed, check_repos=repos.parsed)
    )
    warnings = [w for doc in docs for w in warnings_for(doc)]
    warnings += _json_warnings(specs_dir / PIPELINES_DIR, rel)
    if not docs and not unparsed:
        warnings.append(
            SpecError(
                rel(specs_dir / PIPELINES_DIR),
                0,
                "",
                "no pipeline specs found",
                "add pipelines/<name>.yaml; applying this prunes nothing "
                "unless --prune --allow-empty is given",
            )
        )
    files = tuple([rel(repos_path)] if repos_path.exists() else []) + tuple(d.file for d in docs)
    errors = sorted(set(errors), key=lambda e: (e.file, e.line, e.path, e.message))
    state = None if errors else DesiredState(tuple(repos.repos), _ordered(docs))
    return SpecReport(tuple(errors), tuple(warnings), state, files)


def _json_warnings(folder: Path, rel: Any) -> list[SpecError]:
    return [
        SpecError(
            rel(path),
            0,
            "",
            "JSON specs are not read: pachsync reads pipelines/*.yaml",
            "convert it to YAML (same snake_case keys) or move it out of pipelines/",
        )
        for path in sorted(folder.glob("*.json"))
    ]


def _read(path: Path, file: str, errors: list[SpecError]) -> LoadedYaml | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(
            SpecError(file, 0, "", f"cannot read file: {exc}", "check the file exists and is UTF-8")
        )
        return None
    try:
        doc = load_yaml(text)
    except YamlProblem as exc:
        from agent.specs.schema import dotted

        errors.append(
            SpecError(
                file,
                exc.line,
                dotted(exc.path),
                exc.message,
                "fix the YAML syntax (indentation, quotes, colons) at that line",
            )
        )
        return None
    if doc.data is None:
        errors.append(SpecError(file, 1, "", "file is empty", "write a spec or delete the file"))
        return None
    return doc


def _load_repos(path: Path, file: str, errors: list[SpecError]) -> _Repos:
    if not path.exists():
        return _Repos()  # no input repos declared: inputs must then all be pipelines
    doc = _read(path, file, errors)
    if doc is None:
        return _Repos(parsed=False)
    problems = schema_errors("repos", doc, file)
    errors.extend(problems)
    found = _Repos(parsed=not problems)
    items = doc.data.get("repos") if isinstance(doc.data, dict) else None
    for index, item in enumerate(items if isinstance(items, list) else []):
        # Entries with errors still declare their name, so inputs do not cascade into errors.
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        project = str(item.get("project") or "default")
        repo = RepoSpec(item["name"], str(item.get("description") or ""), project)
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


def _load_pipelines(
    folder: Path, rel: Any, errors: list[SpecError]
) -> tuple[list[PipelineDoc], frozenset[tuple[str, str]]]:
    """The documents that parsed, and the names promised by the files that did not."""
    if not folder.is_dir():
        return [], frozenset()
    docs, unparsed = [], set()
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        file = rel(path)
        doc = _read(path, file, errors)
        if doc is None:
            unparsed.add(("default", path.stem))
            continue
        errors.extend(schema_errors("pipeline", doc, file))
        docs.append(PipelineDoc(file=file, stem=path.stem, doc=doc))
    return docs, frozenset(unparsed)


def _ordered(docs: list[PipelineDoc]) -> tuple[PipelineSpec, ...]:
    """Kahn's algorithm; ties broken by name so the order is stable across runs."""
    specs = {}
    for doc in docs:
        names = tuple(dict.fromkeys(repo for _, _, repo in input_repos(doc.doc.data)))
        specs[doc.name] = PipelineSpec(doc.name, doc.file, doc.doc.data, names)
    pending = {name: {i for i in spec.inputs if i in specs} for name, spec in specs.items()}
    order: list[PipelineSpec] = []
    while pending:
        ready = sorted(name for name, ups in pending.items() if not ups)
        if not ready:  # unreachable after check_graph; keep the loop finite anyway
            ready = sorted(pending)
        for name in ready:
            order.append(specs[name])
            del pending[name]
        for ups in pending.values():
            ups.difference_update(ready)
    return tuple(order)
