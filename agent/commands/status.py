"""`pachsync status`: every pipeline in the cluster, whether pachsync manages it, and its health.

Thin: agent.cluster.observe (repos, pipelines, newest job per pipeline) -> one row per pipeline:
managed or not, source commit, in sync or drifted (updated since pachsync applied it: a newer
version than `pachsync.io/applied-version`, or for older pipelines a normalised spec no longer
matching `pachsync.io/spec-hash`), state, last job and its datum counts.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.commands._syncargs import add_pachd_arg
from agent.errors import EXIT_OK
from agent.util.safetext import json_dumps, one_line


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status", help="per pipeline: managed?, source commit, in sync or drifted, last job",
        description="Show every pipeline of the cluster: whether pachsync manages it (and from "
        "which source and commit), whether it still equals what was applied (drift), its state, "
        "and its newest job with datum counts.")
    add_pachd_arg(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def rows(live: Any) -> list[dict[str, Any]]:
    """PURE: LiveState (with jobs) -> one status dict per pipeline."""
    from agent.plan.diff import touched_by_others
    from agent.plan.normalize import (
        ANN_MANAGED_BY,
        ANN_SOURCE_COMMIT,
        annotations_of,
        normalize_spec,
        spec_hash,
    )

    out = []
    for lp in live.pipelines:
        ann = annotations_of(lp.spec)
        sync = "unmanaged"
        if ann.get(ANN_MANAGED_BY):
            current = spec_hash(normalize_spec(lp.spec, lp.project))
            sync = "drifted" if touched_by_others(ann, lp, current) else "in sync"
        name = lp.name if lp.project in ("", "default") else f"{lp.project}/{lp.name}"
        job = live.jobs.get(name)
        out.append({
            "name": name, "managed_by": ann.get(ANN_MANAGED_BY), "sync": sync,
            "source_commit": ann.get(ANN_SOURCE_COMMIT), "state": lp.state,
            "version": lp.version, "last_job": None if job is None else {
                "id": job.id, "state": job.state, "total": job.total,
                "processed": job.processed, "skipped": job.skipped, "failed": job.failed},
        })
    return out


def _text(table: list[dict[str, Any]], address: str) -> str:
    lines = [f"pachd {address}: {len(table)} pipeline(s)"]
    head = (f"{'PIPELINE':<20} {'SYNC':<10} {'COMMIT':<12} {'STATE':<18} "
            "LAST JOB (done/total, failed)")
    lines.append(head)
    for r in table:
        job = r["last_job"]
        jt = "-" if job is None else (
            f"{job['id'][:12]} {job['state'].replace('JOB_', '').lower()} "
            f"{job['processed'] + job['skipped'] + job['failed']}/{job['total']}, "
            f"{job['failed']} failed")
        lines.append(f"{r['name']:<20} {r['sync']:<10} {(r['source_commit'] or '-')[:12]:<12} "
                     f"{r['state'].replace('PIPELINE_', '').lower():<18} {jt}")
    return "\n".join(one_line(line) for line in lines)  # names, annotations: cluster data


def run(args: argparse.Namespace) -> int:
    from agent.cluster.address import resolve
    from agent.cluster.client import connect
    from agent.cluster.observe import newest_jobs, observe, with_jobs

    target = resolve(args.pachd)
    conn = connect(target)
    try:
        live = observe(conn)
        names = [p.name if p.project in ("", "default") else f"{p.project}/{p.name}"
                 for p in live.pipelines]
        live = with_jobs(live, newest_jobs(conn, names))
    finally:
        conn.close()
    table = rows(live)
    if args.format == "json":
        print(json_dumps({"pachd": target.address, "pipelines": table}, indent=2,
                         sort_keys=True))
    else:
        print(_text(table, target.address))
    return EXIT_OK
