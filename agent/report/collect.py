"""Fills a `ReportData` from a live cluster: the one part of the report that talks to pachd.

Called by `agent.commands.report` (and so by the demo). All RPCs go through
`agent.cluster.outputs`; this module decides what to read and turns the cluster's plain values
into the report's model. Missing pieces (no `select` output yet, a job still writing `test`)
become warnings on the page rather than failures, so a report can be drawn at any moment.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.cluster import outputs
from agent.cluster.address import PachdTarget
from agent.cluster.client import connected
from agent.cluster.model import LivePipeline
from agent.errors import PachsyncError, UsageError
from agent.plan.normalize import ANN_MANAGED_BY, ANN_SOURCE_COMMIT
from agent.report.graph import build_graph
from agent.report.model import (
    Comparison,
    JobView,
    ModelResult,
    PipelineView,
    ReportData,
    Selection,
    results_from_metrics,
)
from agent.report.render import ReportFiles, summary, write_report
from agent.util.inputs import walk_pfs


@dataclass(frozen=True)
class Options:
    test_repo: str = "test"
    select_repo: str = "select"
    branch: str = "master"
    jobs_per_pipeline: int = 5
    compare: str | None = None  # commit of test_repo to compare with (id or ~N)


def input_repos(node: dict[str, Any] | None) -> Iterator[str]:
    """Repos named by a pipeline's input tree, depth first, in spec order."""
    return (str(pfs.get("repo", "")) for _, pfs in walk_pfs(node))


def pipeline_view(live: LivePipeline, jobs: tuple[outputs.JobRecord, ...]) -> PipelineView:
    spec = live.spec
    annotations = (spec.get("metadata") or {}).get("annotations") or {}
    inputs = tuple(dict.fromkeys(r for r in input_repos(spec.get("input")) if r))
    return PipelineView(
        name=live.name,
        state=live.state.removeprefix("PIPELINE_"),
        inputs=inputs,
        image=str((spec.get("transform") or {}).get("image", "")),
        source_commit=str(annotations.get(ANN_SOURCE_COMMIT, "")),
        managed_by=str(annotations.get(ANN_MANAGED_BY, "")),
        version=live.version,
        jobs=tuple(JobView(j.id, j.state, j.processed, j.skipped, j.failed, j.recovered, j.total,
                           j.started, j.finished, j.pipeline_version) for j in jobs),
    )  # fmt: skip


def format_rule(rule: Any) -> str:
    """selected.json's rule ({"kind": "tolerance", "tolerance": 0.0}) as `tolerance=0.0`."""
    if isinstance(rule, dict):
        kind = rule.get("kind", "")
        rest = ", ".join(f"{k}={v}" for k, v in rule.items() if k != "kind")
        return f"{kind}: {rest}" if kind and rest else str(kind or rest)
    return "" if rule is None else str(rule)


def cv_scores(leaderboard_csv: str | None) -> tuple[tuple[str, float], ...]:
    """(model, cross-validated accuracy) from leaderboard.csv's cv_accuracy column; rows without
    a number there (an older select, a model without _cv.txt) are left out."""
    out = []
    for row in csv.DictReader(io.StringIO(leaderboard_csv or "")):
        try:
            value = float(row.get("cv_accuracy") or "")
        except ValueError:
            continue
        if row.get("model") and math.isfinite(value):
            out.append((str(row["model"]), value))
    return tuple(out)


def selection_of(found: outputs.SelectOutputs) -> Selection | None:
    """From selected.json; else from leaderboard.csv's `selected` column; else None. The
    cross-validated accuracies come from leaderboard.csv either way."""
    scores = cv_scores(found.leaderboard_csv)
    if found.selected is not None:
        names = tuple(str(n) for n in found.selected.get("selected", []))
        best = found.selected.get("best_accuracy")
        return Selection(names, float(best) if best is not None else None,
                         format_rule(found.selected.get("rule")), scores)  # fmt: skip
    if found.leaderboard_csv:
        rows = list(csv.DictReader(io.StringIO(found.leaderboard_csv)))
        names = tuple(r["model"] for r in rows if r.get("selected", "").lower() == "true")
        return Selection(names, None, "from leaderboard.csv", scores)
    return None


def _finished_commit(client: Any, repo: str, opts: Options, target: PachdTarget | None,
                     warnings: list[str]) -> str | None:  # fmt: skip
    """The branch head if it is finished and not failed, else the newest such commit (warned)."""
    head = outputs.head_commit(client, repo, opts.branch, target)
    if head is None:
        warnings.append(f"repo {repo!r} has no branch {opts.branch!r} yet: no outputs to show")
        return None
    if head.finished and not head.error:
        return head.id
    why = f"failed ({head.error})" if head.error else "is still being written"
    good = [c for c in outputs.list_commits(client, repo, target=target)
            if c.finished and not c.error]  # fmt: skip
    if not good:
        warnings.append(f"{repo}@{opts.branch} (commit {head.id}) {why}; no good output yet")
        return None
    warnings.append(f"{repo}@{opts.branch} (commit {head.id}) {why}; "
                    f"showing the newest good commit {good[0].id}")  # fmt: skip
    return good[0].id


def _selection(client: Any, commit: str, opts: Options, target: PachdTarget | None,
               warnings: list[str]) -> Selection | None:  # fmt: skip
    """select's newest output when it was made after the metrics' commit (so it read those
    metrics: e.g. only select's rule changed since), else select's output of the same commit set
    as the metrics (same id), else its newest (warned)."""
    try:
        same = outputs.head_commit(client, opts.select_repo, commit, target)
    except PachsyncError:
        same = None
    later = _later_selection_commit(client, commit, opts, target)
    if later is not None:
        chosen = later
        warnings.append(f"{opts.select_repo}@{chosen} comes from another commit set than "
                        f"{opts.test_repo}@{commit}, made after it: it read them")  # fmt: skip
    elif same is not None and same.finished and not same.error:
        chosen = same.id
    else:
        newest = _finished_commit(client, opts.select_repo, opts, target, warnings)
        if newest is None:
            return None
        chosen = newest
        warnings.append(f"{opts.select_repo}@{chosen} comes from another commit set than "
                        f"{opts.test_repo}@{commit}: the outline may lag the heatmap")  # fmt: skip
    found = outputs.read_select(client, opts.select_repo, chosen, target)
    sel = selection_of(found)
    if sel is None:
        warnings.append(f"{opts.select_repo}@{chosen} has no selected.json or leaderboard.csv")
    return sel


def _later_selection_commit(client: Any, commit: str, opts: Options,
                            target: PachdTarget | None) -> str | None:  # fmt: skip
    """select's head when it is good and started no earlier than the metrics commit `commit`."""
    head = outputs.head_commit(client, opts.select_repo, opts.branch, target)
    if head is None or not head.finished or head.error or head.id == commit:
        return None
    metrics = outputs.head_commit(client, opts.test_repo, commit, target)
    if metrics is None or metrics.started is None or head.started is None:
        return None
    return head.id if head.started >= metrics.started else None


def _same_set_selection(client: Any, commit: str, opts: Options,
                        target: PachdTarget | None) -> Selection | None:  # fmt: skip
    """What select kept (and scored) in the commit set `commit`; None when it has no such
    commit."""
    try:
        same = outputs.head_commit(client, opts.select_repo, commit, target)
        if same is None or not same.finished or same.error:
            return None
        return selection_of(outputs.read_select(client, opts.select_repo, same.id, target))
    except PachsyncError:
        return None


def collect(client: Any, pachd: str = "", opts: Options | None = None,
            target: PachdTarget | None = None) -> ReportData:  # fmt: skip
    """Everything the report shows, read from the cluster `client` talks to."""
    opts = opts or Options()
    warnings: list[str] = []
    lives = outputs.live_pipelines(client, target)
    pipelines = tuple(
        pipeline_view(p, outputs.recent_jobs(client, p.name, opts.jobs_per_pipeline,
                                             p.project, target))  # fmt: skip
        for p in lives
    )
    names = {p.name for p in pipelines}
    repos = tuple(sorted({i for p in pipelines for i in p.inputs} - names))
    commit = _finished_commit(client, opts.test_repo, opts, target, warnings)
    results: tuple[ModelResult, ...] = ()
    selection = None
    if commit:
        selection = _selection(client, commit, opts, target, warnings)
        metrics = outputs.read_metrics(client, opts.test_repo, commit, target)
        results = results_from_metrics(metrics, selection.names if selection else (),
                                       dict(selection.cv) if selection else None)  # fmt: skip
        if not results:
            warnings.append(f"{opts.test_repo}@{commit} holds no *_metric.txt files")
    comparison = None
    if opts.compare:
        old = outputs.resolve_commit(client, opts.test_repo, opts.compare, target)
        if outputs.head_commit(client, opts.test_repo, old, target) is None:
            raise UsageError(f"commit {old} not found in repo {opts.test_repo!r}",
                             hint="use a job id of the test pipeline (job ids are its output "
                                  "commit ids) or ~N for N commits before the newest")  # fmt: skip
        old_metrics = outputs.read_metrics(client, opts.test_repo, old, target)
        old_sel = _same_set_selection(client, old, opts, target)
        comparison = Comparison(old, results_from_metrics(
            old_metrics, old_sel.names if old_sel else (), dict(old_sel.cv) if old_sel else None))
    return ReportData(results, selection, pipelines, repos, pachd, commit or "", time.time(),
                      comparison, tuple(warnings))  # fmt: skip


@dataclass(frozen=True)
class Generated:
    """What `generate` wrote and what it showed (the summary is the page's JSON data island)."""

    files: ReportFiles
    data: ReportData
    summary: dict[str, Any]
    rpc_count: int  # gRPC calls it took to read the cluster


def generate(pachd: str | None, out_dir: Path, opts: Options | None = None) -> Generated:
    """Connect (the shared address resolution), collect, render. Used by the command and demo."""
    with connected(pachd) as conn:
        target = conn.target
        data = collect(conn.client, f"{target.host}:{target.port}", opts, target)
    files = write_report(data, out_dir)
    facts = summary(data, build_graph(data.pipelines, data.repos))
    return Generated(files, data, facts, conn.rpc_count)
