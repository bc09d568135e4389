"""`pachsync plan`: show what `apply` would do, per pipeline, with field-level diffs.

Thin: options -> agent.sync (prepare, make_plan) -> agent.plan.render. Exit codes with
`--exit-code` follow `argocd app diff`: 0 in sync, 1 changes pending (anything that differs:
drift, conflicts, orphans and adoptions too, even when `apply` would not touch them), 2 error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.commands._syncargs import add_policy_args, add_source_args, prepared_from_args
from agent.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, SpecInvalid
from agent.util.safetext import one_line


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan", help="show what apply would change (create/update/reprocess/delete/drift)",
        description="Compare the specs (a folder or a git branch) with the live cluster and "
        "show, per pipeline, create / update (with or without reprocess, and why, and how many "
        "datums it re-runs) / unchanged / delete / drift, with field-level diffs.")
    add_source_args(p)
    add_policy_args(p)
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                   help="markdown is meant for a pull-request comment (table, diffs, Mermaid DAG)")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 0 only when nothing at all differs, 1 when anything does "
                        "(changes to apply, drift, conflicts, orphans, pipelines to adopt), 2 "
                        "on error (invalid specs included)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cluster.client import connected
    from agent.plan import render
    from agent.sync import make_data_plan, make_plan

    try:
        prepared = prepared_from_args(args)
    except SpecInvalid as exc:
        if not args.exit_code:
            raise
        print(exc.format(show=one_line), file=sys.stderr)
        return EXIT_ERROR  # with --exit-code, 1 means "valid changes pending", never "invalid"
    with connected(args.pachd) as conn:
        result, live = make_plan(conn, prepared.desired, prepared.policy)
        data = make_data_plan(conn, prepared.desired, prepared.policy, live)
    print(render(result, args.format, data))
    if args.exit_code and (result.has_changes or data.has_changes):
        return EXIT_CHANGES
    return EXIT_OK
