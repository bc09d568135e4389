"""`pachsync apply`: make the cluster equal to the specs, once.

Thin: options -> agent.sync (prepare, reconcile) -> printed plan and result. Repos first, then
creates/updates in one Pachyderm transaction, then deletions (only with --prune). `--dry-run`
prints the plan and changes nothing. A conflict (a pipeline git names that another source owns,
or a name a plain repo takes) is skipped with the pipelines that read it, everything else is
applied, and the exit code is 2 (result `partial`); 0 when everything git wants was applied
(pipelines left for --adopt or --prune are reported, not errors). Output goes through
`agent.plan.render` and `agent.util.safetext.json_dumps`: names and values from git or the
cluster are escaped.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.commands._syncargs import add_policy_args, add_source_args, prepared_from_args
from agent.errors import EXIT_ERROR, EXIT_OK
from agent.util.safetext import json_dumps, one_line


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
    from agent.cluster.client import connected
    from agent.plan import render
    from agent.plan.render import to_dict
    from agent.sync import reconcile, run_result

    prepared = prepared_from_args(args)
    with connected(args.pachd) as conn:
        outcome = reconcile(conn, prepared.desired, prepared.policy, dry_run=args.dry_run)
    done = outcome.applied
    result = run_result(outcome, args.dry_run)
    code = EXIT_ERROR if result == "partial" else EXIT_OK
    if args.format == "json":
        data = to_dict(outcome.plan, outcome.data)
        data["result"] = result
        data["skipped"] = [c.name for c in outcome.plan.skipped]
        data["applied"] = None if done is None else {
            "repos_created": list(done.repos_created), "pipelines": list(done.applied),
            "deleted": list(done.deleted), "data": list(done.data_written)}
        data["rpc_count"] = conn.rpc_count
        print(json_dumps(data, indent=2, sort_keys=True, default=str))
        return code
    print(render(outcome.plan, "text", outcome.data))
    pending = outcome.plan.has_changes or bool(outcome.data and outcome.data.has_changes)
    if done is None:
        print("dry run: nothing applied")
    elif not (done.repos_created or done.applied or done.deleted or done.data_written):
        print("Nothing applied (see the plan above)." if pending
              else "Nothing to apply: the cluster equals git.")
    else:
        wrote = f", data written to {len(done.data_written)} repo(s) " \
                f"({', '.join(done.data_written)})" if done.data_written else ""
        print(one_line(f"Applied: {len(done.repos_created)} repo(s) created, "
                       f"{len(done.applied)} pipeline(s) created/updated in one transaction, "
                       f"{len(done.deleted)} deleted{wrote}."))
    if result == "partial":
        skipped = outcome.plan.skipped
        print(one_line(f"Partial: {len(skipped)} pipeline(s) skipped because of conflicts "
                       f"({', '.join(c.name for c in skipped)}); everything else was applied. "
                       "Resolve the conflicts listed above and apply again."))
    return code
