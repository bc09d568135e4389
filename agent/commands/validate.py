"""`pachsync validate`: checks specs/ (schema + semantics) and lists every problem with its place.

Registered by `agent.cli`; the work is `agent.specs.check_specs`. Exit 0 when the specs are
valid, 1 when not (malformed YAML included: it is reported like any other error, never as a
traceback). `--format json` is for scripts, `--format azure` emits Azure Pipelines logging
commands so CI annotates the pull request at the offending line.

Everything printed quotes the pull request (file names, keys, values, the offending line), so
it goes out through `agent.util.safetext`: text lines are `one_line`, JSON is `json_dumps`, and
the azure format's `##vso[task.logissue ...]` lines are built and written only by
`agent.commands._output.emit_logging_command`, which escapes their properties and message.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agent.commands._syncargs import specs_dir_problem
from agent.errors import EXIT_CHANGES, EXIT_OK, UsageError
from agent.util.safetext import json_dumps, one_line

FORMATS = ("text", "json", "azure")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check specs/ against the schema and the DAG rules",
        description="Validate the GitOps specs: repos.yaml and pipelines/*.yaml against "
        "schemas/ (pachsync's strict profile of Pachyderm's spec), then file names, unique and "
        "valid names, declared input repos, an acyclic DAG, unique input names in a cross/join, "
        "and immutable image tags. Each problem is printed as `file:line: spec.path: message` "
        "with a hint.",
        epilog="exit codes: 0 valid, 1 invalid, 2 usage error (e.g. no such folder).",
    )
    parser.add_argument(
        "--specs",
        type=Path,
        default=Path("specs"),
        help="the specs folder holding repos.yaml and pipelines/ (default: specs)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), json, or azure (Azure Pipelines log commands)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.specs import check_specs

    specs_dir: Path = args.specs
    if not specs_dir.is_dir():
        raise UsageError(
            specs_dir_problem(specs_dir),
            "pass --specs DIR, the folder holding repos.yaml and pipelines/",
        )
    root = _root_for(specs_dir)
    report = check_specs(specs_dir, root=root)
    if args.format == "text":
        print(_text(report, specs_dir, root))
    elif args.format == "json":
        print(_json(report, specs_dir))
    else:
        _azure(report, specs_dir)
    return EXIT_CHANGES if report.errors else EXIT_OK


def _root_for(specs_dir: Path) -> Path:
    """File names relative to the working directory when the specs are under it (clickable in
    terminals and CI logs), else relative to the specs folder's parent (the repo root)."""
    cwd = Path.cwd().resolve()
    resolved = specs_dir.resolve()
    return cwd if resolved == cwd or cwd in resolved.parents else resolved.parent


def _text(report: Any, specs_dir: Path, root: Path | None = None) -> str:
    lines = []
    for error in report.errors:
        lines += [error.format(show=one_line), *map(one_line, _snippet(root, error))]
    for warning in report.warnings:
        lines += [warning.format("warning", one_line), *map(one_line, _snippet(root, warning))]
    if report.errors:
        files = len({e.file for e in report.errors})
        lines.append(f"{len(report.errors)} error(s) in {files} file(s): "
                     f"{one_line(str(specs_dir))} is invalid")
    else:
        state = report.state
        order = " -> ".join(p.name for p in state.pipelines) or "no pipelines"
        data = [r for r in state.repos if r.data is not None]
        files = sum(len(r.data.files) for r in data if r.data is not None)
        lines.append(one_line(
            f"{specs_dir} is valid: {len(state.repos)} input repo(s), "
            f"{len(state.pipelines)} pipeline(s) ({order})"
            + (f", {files} data file(s) declared for {len(data)} repo(s)" if data else "")
        ))
    return "\n".join(lines)


def _snippet(root: Path | None, e: Any) -> list[str]:
    """The offending line of the file, indented under the message, as DVC and compilers do;
    read as the specs were (agent.specs.safefs: never through a link, never a FIFO or device,
    at most 1 MiB), so a snippet cannot print a file outside the checkout."""
    from agent.specs.safefs import read_line

    if root is None or e.line < 1:
        return []
    text = read_line(str(root), e.file, e.line)
    return [f"  {e.line:>4} | {text[:200]}"] if text is not None else []


def _json(report: Any, specs_dir: Path) -> str:
    state = report.state
    doc = {
        "valid": not report.errors,
        "specs": str(specs_dir),
        "files": list(report.files),
        "errors": [asdict(e) for e in report.errors],
        "warnings": [asdict(w) for w in report.warnings],
        "repos": [r.name for r in state.repos] if state else [],
        "data": {r.name: [f.path for f in r.data.files] for r in state.repos
                 if r.data is not None} if state else {},
        "pipelines": [
            {"name": p.name, "file": p.file, "inputs": list(p.inputs)} for p in state.pipelines
        ]
        if state
        else [],
    }
    return json_dumps(doc, indent=2)


def _azure(report: Any, specs_dir: Path) -> None:
    """One `task.logissue` per problem (sourcepath and message shown as `one_line`, then
    escaped as Azure documents), then the summary line."""
    from agent.commands._output import emit_logging_command

    for kind, problems in (("error", report.errors), ("warning", report.warnings)):
        for e in problems:
            emit_logging_command("task.logissue",
                                 {"type": kind, "sourcepath": e.file, "linenumber": e.line},
                                 e.detail)
    print(_text(report, specs_dir).splitlines()[-1])
