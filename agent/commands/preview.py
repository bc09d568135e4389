"""`pachsync preview --base REF`: a pull request's pipeline run for real, before merge.

Registered by `agent.cli`; the work is in `agent.preview.flow`. This module starts the throwaway
localpachd servers (agent.commands._localserver, as `demo` does) with the tree's stage code
first on their PYTHONPATH, writes preview.md and prints a summary (text) or the outcome (json).
Exit 0 ok, 1 a job of the preview failed, 2 error.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HELP = "run the pipeline of the base ref and of the working tree on localpachd and compare"
DESCRIPTION = """\
Run the pipeline twice on throwaway localpachd servers: the base ref (git archive of REF: specs,
stages and declared data) and the working tree, planned and applied against a copy of the base
run's cluster exactly as the agent will after merge (only what the plan re-runs runs again).
Writes DIR/preview.md (for the pull request comment: the plan, best accuracy before and after,
models newly selected or no longer selected, cells of the search that changed, each pipeline's
runtime and datums, failed jobs with their last log lines) and DIR/preview.html (the report,
compared with the base run). The base run is cached in --cache by REF's tree hash. When the plan
re-runs nothing and no data changed (descriptions only), nothing runs for the working tree.
On localpachd the stage code comes from each checkout's stages/, not from the image tags.
Exit 0 ok, 1 a preview job failed, 2 error.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("preview", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, metavar="REF",
                   help="git ref to compare with (the pull request's target, e.g. origin/main)")
    p.add_argument("--out", type=Path, default=Path("preview"), metavar="DIR",
                   help="folder for preview.md and preview.html (default: preview)")
    p.add_argument("--cache", type=Path, default=Path(".pachsync-preview-cache"), metavar="DIR",
                   help="base runs by tree hash (default: .pachsync-preview-cache)")
    p.add_argument("--repo", type=Path, default=Path("."), metavar="DIR",
                   help="the working tree (default: the current directory)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each run")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


@contextmanager
def _pythonpath(code: Path) -> Iterator[None]:
    """PYTHONPATH=code while the child starts (start_local passes os.environ on)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(code.resolve())
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _start(data_dir: Path, code: Path) -> Any:
    from agent.commands._localserver import start_local

    with _pythonpath(code):
        return start_local(data_dir)


def run(args: argparse.Namespace) -> int:
    from agent.errors import EXIT_CHANGES, EXIT_OK
    from agent.preview.flow import Request, preview
    from agent.preview.markdown import render
    from agent.util.safetext import json_dumps, one_line

    req = Request(args.repo, args.base, args.out, args.cache, args.timeout)
    done = preview(req, _start)
    md = args.out / "preview.md"
    md.write_text(render(done))
    if args.format == "json":
        c = done.comparison
        print(json_dumps({
            "base": {"ref": done.base_ref, "commit": done.base_commit, "tree": done.base_tree,
                     "cached": done.base_cached, "result": done.base.to_json()},
            "head": {"commit": done.head_commit, "ran": done.head is not None,
                     "jobs": [j.__dict__ for j in (c.head_jobs if c else ())],
                     "result": done.head.to_json() if done.head else None},
            "comparison": None if c is None else {
                k: v for k, v in c.__dict__.items() if k != "head_jobs"},
            "image_bumped": done.image_bumped, "failed": done.failed, "plan": done.plan,
            "files": {"markdown": str(md), "html": done.html}, "warnings": done.warnings,
        }, indent=2, sort_keys=True, default=list))  # fmt: skip
    else:
        from agent.preview.markdown import headline

        print(one_line(headline(done).replace("**", "")))
        print(one_line(f"preview: {md}" + (f"  report: {done.html}" if done.html else "")))
        for w in done.warnings:
            print(f"warning: {one_line(w)}")
    return EXIT_CHANGES if done.failed else EXIT_OK
