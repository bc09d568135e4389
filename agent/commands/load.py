"""`pachsync load REPO SRC`: put local data (a file or a directory) into an input repo.

Thin: options -> agent.cluster.load.load_path (one commit, one atomic upload). `--split-lines`
writes one file per non-blank line named by its value (`c_parameters.txt` ->
`/c_parameters.txt/0.031` ...), so reloading after inserting a value re-runs only its datums;
`--line-names index` names them as Pachyderm 1.x's `put file --split line` did (16 hex digits).

Before writing, the pipelines reading REPO are listed (2 RPCs) and their input globs matched
against the paths the load writes: `--split-lines` into a place no glob sees is refused (the
pipelines would silently get 0 datums from it), with the destination that would be seen when
there is one; a plain load no glob sees is written with a warning. `--force` skips the refusal.
Data the agent should keep in a repo is better declared in git (specs/repos.yaml `data:`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.commands._syncargs import add_pachd_arg
from agent.errors import EXIT_OK, UsageError
from agent.util.safetext import one_line


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "load", help="put a local file or directory into an input repo (one commit)",
        description="Upload SRC (a file or a directory) into REPO's branch as one commit. The "
        "destination defaults to SRC's base name; a directory keeps its layout under it "
        "(--dest / puts its content at the repo root). To keep files of a git repository in "
        "REPO, declare them in specs/repos.yaml (data:) instead.")
    p.add_argument("repo", metavar="REPO", help="input repo to write to (must exist)")
    p.add_argument("src", metavar="SRC", type=Path, help="local file or directory")
    p.add_argument("--dest", metavar="PATH", help="destination path in the repo")
    p.add_argument("--split-lines", action="store_true",
                   help="one file per non-blank line, named by its value (see --line-names)")
    p.add_argument("--line-names", choices=("content", "index"), default="content",
                   help="content (default): a line file is named by its value, so inserting a "
                        "value re-runs only its datums; index: 16 hex digits of the line "
                        "number, as Pachyderm 1.x named them")
    p.add_argument("--force", action="store_true",
                   help="load even where no input glob of the pipelines reading REPO sees it")
    p.add_argument("--branch", default="master", help="branch to commit to (default: master)")
    p.add_argument("--project", default="default", help="Pachyderm project (default: default)")
    add_pachd_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cluster.client import connected
    from agent.cluster.load import load_path

    with connected(args.pachd) as conn:
        _check_globs(conn, args)
        report = load_path(conn, args.repo, args.src, args.dest, args.split_lines,
                           branch=args.branch, project=args.project, names=args.line_names)
    print(f"loaded {len(report.files)} file(s), {report.bytes} bytes into "
          f"{report.repo}@{args.branch} (commit {report.commit})")
    return EXIT_OK


def _check_globs(conn: Any, args: argparse.Namespace) -> None:
    """Refuse (--split-lines) or warn when no pipeline reading the repo would see the load."""
    from agent.cluster.load import glob_check, plan_files
    from agent.cluster.observe import observe

    paths = [p for p, _ in plan_files(args.src, args.dest, args.split_lines, args.line_names)]
    pipelines = observe(conn).pipelines
    check = glob_check(pipelines, args.repo, args.project, paths)
    if not check.unseen or args.force:
        return
    globs = "; ".join(f"{name} reads {glob}" for name, glob in check.readers)
    where = paths[0] if len(paths) == 1 else f"{paths[0]} ... ({len(paths)} files)"
    message = (f"no input glob of the pipelines reading {args.repo} sees what this load writes "
               f"({where}): {globs}; they would get no datum from it")
    hint = _better_dest(args, pipelines)
    if args.split_lines:
        raise UsageError(message, hint=hint + "; or --force to load it anyway")
    print(one_line(f"warning: {message}; hint: {hint}"), file=sys.stderr)


def _better_dest(args: argparse.Namespace, pipelines: Any) -> str:
    """`--dest /` when the globs would see the files there, else a generic hint."""
    from agent.cluster.load import glob_check, plan_files

    if args.dest != "/":
        paths = [p for p, _ in plan_files(args.src, "/", args.split_lines, args.line_names)]
        check = glob_check(pipelines, args.repo, args.project, paths)
        if check.seeing:
            seen = ", ".join(f"{name} ({glob})" for name, glob, _ in check.seeing)
            return f"with --dest / the files land at {paths[0]} ..., which {seen} see"
    return "choose --dest so the paths match an input glob of the pipelines (pachsync status " \
           "lists them), or change the globs"
