"""`pachsync report`: one HTML page of what the search found and how the pipelines ran.

Registered by `agent.cli`; the work is in `agent.report` (`collect.generate` reads the cluster
through `agent.cluster.outputs`, `render.write_report` draws). Prints the report's path (text)
or its summary (json). Exit 0 when the page was written, 2 when the cluster could not be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "write report.html: accuracy heatmap, leaderboard, pipeline graph and recent jobs"
DESCRIPTION = """\
Read the live outputs (test's *_metric.txt files, select's selected.json and leaderboard.csv,
the pipelines with their jobs and datum counts) and write a self-contained report.html into
--out, with the PNGs it embeds beside it: the accuracy heatmap over C x gamma (selected models
outlined, best value annotated), the leaderboard, the pipeline graph with each node's state and
last job's datum counts, recent jobs, and the git commit and image each pipeline runs (from
the agent's pachsync.io/source-commit annotation).

--compare COMMIT adds the heatmap of an earlier output commit of `test` and the difference
(now minus then), so a change's effect on the search is visible. COMMIT is a commit id of
`test` (its job ids, listed under "Recent jobs", are exactly its output commit ids), or ~N for
the N-th commit before the newest (~1 = the previous one).
"""
EPILOG = """\
examples:
  pachsync report                       # ./report/report.html from localhost:30650
  pachsync report --pachd grpc://pachd.example:30650 --out /tmp/r
  pachsync report --compare ~1 --format json
pachd address: --pachd, else PACHD_ADDRESS, else the pachctl config, else localhost:30650.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help=HELP, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--pachd", default=None, metavar="ADDR",
                        help="pachd address (host:port, grpc://, grpcs://)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("report"), metavar="DIR",
                        help="folder for report.html and its PNGs (default: report)")  # fmt: skip
    parser.add_argument("--compare", default=None, metavar="COMMIT",
                        help="earlier commit of the test repo to compare with (id or ~N)")
    parser.add_argument("--jobs", type=int, default=5, metavar="N",
                        help="recent jobs shown per pipeline (default: 5)")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                        help="also save a picture of the page (needs headless Chromium)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.errors import UsageError
    from agent.report.collect import Options, generate
    from agent.util.safetext import json_dumps, one_line

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    try:
        done = generate(args.pachd, args.out, Options(jobs_per_pipeline=args.jobs,
                                                      compare=args.compare))  # fmt: skip
    except ConnectionError:
        raise
    except OSError as exc:  # --out not writable: a usage problem, not a crash
        raise UsageError(f"cannot write the report into {args.out}: {exc.strerror or exc}",
                         hint="pass --out DIR, a folder you can write") from exc
    files = [str(p) for p in done.files.all()]
    if args.screenshot:
        from agent.report.browser import screenshot

        files.append(str(screenshot(done.files.html, args.screenshot)))
    if args.format == "json":
        shown = {"files": files, "rpc_count": done.rpc_count, **_brief(done.summary)}
        print(json_dumps(shown, indent=2, sort_keys=True))
        return 0
    s = done.summary
    best = f"{s['best']['accuracy']:.4f} ({s['best']['model']})" if s["best"] else "-"
    print(one_line(f"report written: {done.files.html}"))
    if args.screenshot:
        print(one_line(f"  screenshot: {args.screenshot}"))
    print(one_line(f"  models: {s['models']}  best: {best}  selected: {len(s['selected'])}  "
                   f"pipelines: {len(s['pipelines'])}"))  # fmt: skip
    if "compare" in s:
        c = s["compare"]
        print(one_line(f"  compared with test@{c['commit']}: {c['cells_changed']} cells "
                       f"changed, mean change {c['mean_change']:+.4f}"))  # fmt: skip
    for warning in s["warnings"]:
        print(f"  warning: {one_line(warning)}")
    return 0


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The JSON output: the summary without the per-model leaderboard (that is in the page)."""
    return {k: v for k, v in summary.items() if k != "leaderboard"}
