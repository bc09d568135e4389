"""`pachsync apply`: make the cluster equal to the specs, once.

Thin: options -> agent.sync (prepare, reconcile) -> printed plan and result. Repos first, then
creates/updates in one Pachyderm transaction, then deletions (only with --prune). `--dry-run`
prints the plan and changes nothing. Output goes through `agent.plan.render` and
`agent.util.safetext.json_dumps`: names and values from git or the cluster are escaped.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.commands._syncargs import add_policy_args, add_source_args, prepared_from_args
from agent.errors import EXIT_OK
from agent.util.safetext import json_dumps


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "apply", help="apply the specs to the cluster (one transaction)",
        description="Create missing input repos, then create and update pipelines in DAG order "
        "inside one Pachyderm transaction, then (with --prune) delete pipelines this source "
        "manages that git no longer declares. Unmanaged pipelines are never touched.")
    add_source_args(p)
    add_policy_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cluster.address import resolve
    from agent.cluster.client import connect
    from agent.plan import render
    from agent.plan.render import to_dict
    from agent.sync import reconcile

    prepared = prepared_from_args(args)
    conn = connect(resolve(args.pachd))
    try:
        outcome = reconcile(conn, prepared.desired, prepared.policy, dry_run=args.dry_run)
    finally:
        conn.close()
    done = outcome.applied
    if args.format == "json":
        data = to_dict(outcome.plan)
        data["applied"] = None if done is None else {
            "repos_created": list(done.repos_created), "pipelines": list(done.applied),
            "deleted": list(done.deleted)}
        data["rpc_count"] = conn.rpc_count
        print(json_dumps(data, indent=2, sort_keys=True, default=str))
        return EXIT_OK
    print(render(outcome.plan, "text"))
    if done is None:
        print("dry run: nothing applied")
    elif not (done.repos_created or done.applied or done.deleted):
        print("Nothing to apply: the cluster equals git.")
    else:
        print(f"Applied: {len(done.repos_created)} repo(s) created, "
              f"{len(done.applied)} pipeline(s) created/updated in one transaction, "
              f"{len(done.deleted)} deleted.")
    return EXIT_OK
