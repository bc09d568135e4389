"""`pachsync demo`: the whole GitOps flow on one machine, ending with the selected models.

Starts localpachd as a child process (agent.commands._localserver), applies specs/ from this
checkout exactly as `pachsync apply` does (agent.sync.reconcile): the input repos, then the
pipelines and the data specs/repos.yaml declares (data/iris.csv into raw_data; the C and gamma
grids into parameters, one file per line named by its value) in one commit set, so every
pipeline runs one job. It then shows progress while the 77-model search runs (per pipeline:
datums done / total), prints the selected models with their accuracy and the rule that chose
them, writes the report when `pachsync report` is available, and stops the server unless
--keep-running.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.errors import EXIT_ERROR, EXIT_OK, PachsyncError

# The checkout this code runs from (an editable install); else the current directory.
_CHECKOUT = Path(__file__).resolve().parents[2]
ROOT = _CHECKOUT if (_CHECKOUT / "specs").is_dir() else Path.cwd()
SHOW_MAX = 12  # selected models listed; the rest are in leaderboard.csv
TERMINAL = {"JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole demo on a local Pachyderm-compatible server",
        description="Start localpachd, apply specs/ (pipelines and the data repos.yaml declares), "
        "run the 77-model hyperparameter search with live progress, print the selected models "
        "and their accuracy.")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="where localpachd keeps its state (default: a new temp dir)")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the server running at the end (prints its address and PID)")
    p.add_argument("--specs", type=Path, default=ROOT / "specs",
                   help=f"specs folder to apply (default: {ROOT / 'specs'})")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the search")
    p.add_argument("--report-dir", type=Path, metavar="DIR",
                   help="where to write the report (default: DATA_DIR/report)")
    p.set_defaults(func=run)


def _progress_line(jobs: dict[str, Any], order: list[str]) -> str:
    parts = []
    for name in order:
        job = jobs.get(name)
        if job is None:
            parts.append(f"{name} -")
            continue
        done = job.processed + job.skipped + job.failed
        mark = {"JOB_SUCCESS": " ok", "JOB_FAILURE": " FAILED"}.get(job.state, "")
        parts.append(f"{name} {done}/{job.total}{mark}")
    return " | ".join(parts)


def wait_for_jobs(conn: Any, order: list[str], timeout: float) -> dict[str, Any]:
    """Poll the newest job of each pipeline once a second until all are finished."""
    from agent.cluster.observe import newest_jobs

    tty = sys.stdout.isatty()
    deadline, last, stable = time.monotonic() + timeout, "", 0
    while True:
        jobs = newest_jobs(conn, order)
        line = _progress_line(jobs, order)
        if tty:
            print("\r" + line.ljust(100), end="", flush=True)
        elif line != last:
            print(line, flush=True)
        last = line
        finished = len(jobs) == len(order) and all(j.state in TERMINAL for j in jobs.values())
        stable = stable + 1 if finished else 0
        if stable >= 2:
            if tty:
                print()
            return jobs
        if time.monotonic() > deadline:
            raise PachsyncError(f"the pipelines did not finish within {timeout:.0f}s: {line}")
        time.sleep(1.0)


def _selection(conn: Any) -> str:
    client = conn.client
    summary = json.loads(client.get_file(("select", "master"), "/selected.json").read())
    board = client.get_file(("select", "master"), "/leaderboard.csv").read().decode()
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(board))}
    lines = [f"Selected {len(summary['selected'])} of {summary['considered']} models "
             f"({describe_rule(summary.get('rule'))}; best accuracy "
             f"{summary['best_accuracy']}):"]
    shown = summary["selected"][:SHOW_MAX]
    for name in shown:
        r = rows.get(name, {})
        lines.append(f"  {name}  C={r.get('C', '?')}  gamma={r.get('gamma', '?')}  "
                     f"accuracy={r.get('accuracy', '?')}")
    if len(summary["selected"]) > len(shown):
        lines.append(f"  ... and {len(summary['selected']) - len(shown)} more "
                     "(all in select's leaderboard.csv)")
    return "\n".join(lines)


def describe_rule(rule: Any) -> str:
    """stages.select's rule in words: `accuracy within 0.0 of the best` or `error at most
    0.1`; anything else as JSON (never a Python repr)."""
    if isinstance(rule, dict) and rule.get("kind") == "tolerance":
        ties = ("; ties broken by cross-validated accuracy" if rule.get("tie_break") == "cv"
                else "")
        return f"rule: accuracy within {rule.get('tolerance')} of the best{ties}"
    if isinstance(rule, dict) and rule.get("kind") == "threshold":
        return f"rule: error (1 - accuracy) at most {rule.get('max_error')}"
    return f"rule: {json.dumps(rule, sort_keys=True, default=str)}"


def _report(address: str, out: Path) -> None:
    """Write the HTML report (agent.report) and print its path, once. Optional for the demo:
    a failure only skips it, the selection is already printed."""
    try:
        from agent.report.collect import generate
    except ImportError as exc:  # a plotting dependency missing
        print(f"report skipped: {exc}", file=sys.stderr)
        return
    try:
        done = generate(address, out)
    except PachsyncError as exc:
        print(f"report skipped: {exc.message}", file=sys.stderr)
        return
    print(f"report: {done.files.html}")


def run(args: argparse.Namespace) -> int:
    from agent.cluster.address import resolve
    from agent.cluster.client import connect
    from agent.commands._localserver import start_local
    from agent.commands._syncargs import require_specs_dir
    from agent.plan import render
    from agent.sync import prepare_local, reconcile

    started = time.perf_counter()
    # invalid specs fail before anything starts
    prepared = prepare_local(require_specs_dir(args.specs), None)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="pachsync-demo-"))
    server = start_local(data_dir, detach=args.keep_running)
    print(f"localpachd listening on {server.address} (data in {data_dir}, log {server.log})")
    conn = connect(resolve(server.address))
    try:
        # The same path as `pachsync apply`: data commits start in the pipelines'
        # transaction, so each pipeline runs once; localpachd starts importing the pipelines'
        # libraries (its warm runtime's prewarm) while the data is written.
        outcome = reconcile(conn, prepared.desired, prepared.policy)
        print(render(outcome.plan, "text", outcome.data), flush=True)
        order = [ps.name for ps in prepared.desired.pipelines]
        jobs = wait_for_jobs(conn, order, args.timeout)
        failed = [n for n, j in jobs.items() if j.state != "JOB_SUCCESS"]
        if failed:
            print(f"pipelines failed: {', '.join(failed)}; see {server.log} and "
                  f"`pachsync status --pachd {server.address}`", file=sys.stderr)
            return EXIT_ERROR
        print(_selection(conn))
        _report(server.address, args.report_dir or data_dir / "report")
        print(f"demo finished in {time.perf_counter() - started:.1f}s")
    finally:
        conn.close()
        if args.keep_running:
            print(f"localpachd keeps running at {server.address} (pid {server.process.pid}, "
                  f"also in {data_dir / 'localpachd.pid'}); stop it with: "
                  f"kill {server.process.pid}")
            print(f"try: pachsync status --pachd {server.address}  |  pachsync plan --pachd "
                  f"{server.address} --specs {args.specs} --source-id {prepared.policy.source_id}")
        else:
            server.stop()
    return EXIT_OK
