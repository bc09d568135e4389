"""`pachsync status`: every pipeline's sync status and health, side by side (as Argo CD shows).

Thin: options -> the desired state, exactly as `plan` reads it (`--specs DIR`, `--source URL
--branch B`, by default ./specs when it exists; `--no-specs`: judge sync from the pipelines'
annotations alone) -> `agent.sync.status_report` (observe, plan, newest jobs) -> the one pure
function `agent.plan.health.pipeline_statuses`, which the agent's /status and /metrics show too
-> text or JSON. With local specs and no `--source-id`, the source is the one owner of the live
pipelines git names (a checkout of what the agent applies is judged as the agent judges it).

`--wait [--timeout S]` polls until no pipeline of ours is Progressing (progress on stderr), as
`argocd app wait --health`: exit 0 if every one is Synced and Healthy, 1 if any is Degraded or
not Synced (or Suspended, Missing, Unknown), 2 on error or timeout. Without --wait: 0, 2 on error.
Unmanaged pipelines (neither in git nor ours) are shown but never waited for nor counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands._syncargs import add_source_args, require_specs_dir
from agent.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, SpecInvalid, UsageError
from agent.util.safetext import json_dumps, one_line

if TYPE_CHECKING:  # imported when the command runs, so `pachsync --help` stays fast
    from agent.cluster.model import LiveJob, LiveState
    from agent.plan.health import PipelineStatus, StatusReport
    from agent.sync import Prepared

POLL_S = 0.5  # how often --wait looks again (ListPipeline + one ListJob per pipeline)
DEFAULT_SPECS = Path("specs")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status", help="per pipeline: sync status (vs git) and health (state, newest job)",
        description="Show every pipeline's sync status (Synced, OutOfSync, Drifted, Orphan, "
        "Conflict, Unmanaged: the cluster against the specs) and health (Healthy, Progressing, "
        "Degraded, Suspended, Missing, Unknown: Pachyderm's pipeline state and the newest job "
        "of the version it runs now), with the reasons, the source commit and datum counts.")
    add_source_args(p)
    p.add_argument("--no-specs", action="store_true",
                   help="do not read specs: judge sync from the pipelines' annotations alone "
                        "(Synced, Drifted, Unmanaged)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--wait", action="store_true",
                   help="wait until no pipeline is Progressing; exit 0 if all are Synced and "
                        "Healthy, 1 if any is Degraded or not Synced, 2 on error or timeout")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="give up waiting after this long (exit 2; default: 300)")
    p.set_defaults(func=run)


def _prepared(args: argparse.Namespace) -> tuple[Prepared | None, str]:
    """The desired state to compare with (None: annotations alone) and where it came from."""
    from agent.commands._syncargs import prepared_from_args
    from agent.sync import prepare_local

    if args.no_specs:
        if args.specs or args.source:
            raise UsageError("--no-specs cannot be combined with --specs or --source")
        return None, ""
    if args.source or args.specs:
        return prepared_from_args(args), args.source or str(args.specs)
    if not DEFAULT_SPECS.is_dir():
        return None, ""
    try:
        return prepare_local(require_specs_dir(DEFAULT_SPECS), args.source_id), str(DEFAULT_SPECS)
    except SpecInvalid as exc:  # ./specs was not asked for: show the cluster anyway
        print(f"warning: {DEFAULT_SPECS}/ does not validate ({len(exc.errors)} error(s); run "
              "`pachsync validate`): sync judged from the annotations alone", file=sys.stderr)
        return None, ""


def _with_inferred_source(prepared: Prepared | None, args: argparse.Namespace,
                          live: LiveState) -> Prepared | None:
    """Local specs without --source-id: take the one owner of the live pipelines they name."""
    from agent.plan.health import infer_source_id
    from agent.plan.normalize import project_of, qualify

    if prepared is None or args.source or args.source_id:
        return prepared
    names = [qualify(project_of(ps.spec), ps.name) for ps in prepared.desired.pipelines]
    owner = infer_source_id(names, live)
    if owner is None:
        return prepared
    return dataclasses.replace(prepared,
                               policy=dataclasses.replace(prepared.policy, source_id=owner))


def _doc(report: StatusReport, address: str, origin: str) -> dict[str, Any]:
    from agent.plan.health import to_dict

    desired = None if report.source_id is None else {
        "from": origin, "source_id": report.source_id, "commit": report.commit or None}
    return {"pachd": address, "desired": desired,
            "pipelines": [to_dict(s) for s in report.pipelines]}


def _job_text(job: LiveJob | None) -> str:
    if job is None:
        return "-"
    done = job.processed + job.skipped + job.failed
    return (f"{job.id[:12]} {job.state.replace('JOB_', '').lower()} "
            f"{done}/{job.total}, {job.failed} failed")


def _text(report: StatusReport, address: str, origin: str) -> str:
    from agent.plan.render import short_commit

    rows = report.pipelines
    compared = ("sync judged from the annotations alone (no specs)" if report.source_id is None
                else f"compared with {origin} at {short_commit(report.commit or '') or '?'} "
                     f"(source {report.source_id})")
    width = max([8, *(len(s.name) for s in rows)])
    lines = [f"pachd {address}: {len(rows)} pipeline(s), {compared}",
             f"{'PIPELINE':<{width}} {'SYNC':<10} {'HEALTH':<12} {'COMMIT':<18} "
             f"{'STATE':<10} LAST JOB (done/total, failed)"]
    for s in rows:
        state = s.state.replace("PIPELINE_", "").lower() or "-"
        lines.append(f"{s.name:<{width}} {s.sync:<10} {s.health:<12} "
                     f"{short_commit(s.source_commit) or '-':<18} {state:<10} "
                     f"{_job_text(s.job)}")
    notes = [f"  {s.name}: {s.sync}/{s.health}: {s.reason}" for s in rows
             if not s.good and s.reason]
    if notes:
        lines += ["", "why:", *notes]
    return "\n".join(one_line(line) for line in lines)  # names, reasons: cluster and git data


def _show(report: StatusReport, address: str, origin: str, fmt: str) -> None:
    if fmt == "json":
        print(json_dumps(_doc(report, address, origin), indent=2, sort_keys=True))
    else:
        print(_text(report, address, origin))


def _progress(waiting: Sequence[PipelineStatus]) -> str:
    return one_line(f"waiting for {len(waiting)} pipeline(s): " +
                    "; ".join(f"{s.name} ({s.health_reason})" for s in waiting))


def wait(poll: Callable[[], StatusReport], timeout: float, interval: float = POLL_S
         ) -> tuple[StatusReport, bool]:
    """Call `poll()` until none of our pipelines is Progressing; (last report, timed out).
    Progress goes to stderr whenever what we wait for changes."""
    from agent.plan.health import waiting_on

    deadline = time.monotonic() + timeout
    said = ""
    while True:
        report = poll()
        waiting = waiting_on(report.pipelines)
        if not waiting:
            return report, False
        if time.monotonic() >= deadline:
            return report, True
        line = _progress(waiting)
        if line != said:
            print(line, file=sys.stderr, flush=True)
            said = line
        time.sleep(interval)


def run(args: argparse.Namespace) -> int:
    from agent.cluster.client import connected
    from agent.cluster.observe import observe
    from agent.plan.health import all_good, waiting_on
    from agent.sync import status_report

    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds (got {args.timeout})")
    try:
        prepared, origin = _prepared(args)
    except SpecInvalid as exc:
        if not args.wait:
            raise
        print(exc.format(show=one_line), file=sys.stderr)
        return EXIT_ERROR  # with --wait, 1 means "not healthy or not synced", never "invalid"
    with connected(args.pachd) as conn:
        first = [observe(conn)]  # read once for the source inference, reused by the first poll
        prepared = _with_inferred_source(prepared, args, first[0])

        def poll() -> StatusReport:
            return status_report(conn, prepared, first.pop() if first else None)

        if not args.wait:
            _show(poll(), conn.target.address, origin, args.format)
            return EXIT_OK
        report, timed_out = wait(poll, args.timeout)
    _show(report, conn.target.address, origin, args.format)
    if timed_out:
        print(_progress(waiting_on(report.pipelines)).replace(
            "waiting for", f"error: timed out after {args.timeout:g}s waiting for", 1),
            file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK if all_good(report.pipelines) else EXIT_CHANGES
