"""Writes a whole report directory from a `ReportData`: the PNGs, then report.html embedding them.

Called by `agent.commands.report` (and the demo through it). Pure apart from writing the files
it is asked to write: no cluster access, so it renders synthetic data in unit tests as well.
`summary()` is the machine-readable view used by `--format json` and the page's data island.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.report.dag import render_dag
from agent.report.graph import Graph, build_graph, layout
from agent.report.heatmap import render_heatmap
from agent.report.model import (
    ReportData,
    build_cv_grid,
    build_grid,
    diff_grid,
    has_cv,
    rank_key,
    summarize_change,
)
from agent.report.page import build_page

HTML_NAME = "report.html"
COMPARE_NAME = "heatmap_compare.png"
DIFF_NAME = "heatmap_diff.png"
CV_NAME = "heatmap_cv.png"
TIE_NOTE = "ranked by cross-validated accuracy"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    heatmap: Path
    dag: Path
    compare: Path | None = None
    diff: Path | None = None
    cv: Path | None = None  # the cross-validated accuracy heatmap, when select wrote the scores

    def all(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.html, self.heatmap, self.dag, self.compare, self.diff,
                                 self.cv) if p)  # fmt: skip


def summary(data: ReportData, graph: Graph) -> dict[str, Any]:
    """The report's facts as plain JSON-able values (what the page shows, minus the pictures)."""
    grid = build_grid(data.results)
    best = data.best
    out: dict[str, Any] = {
        "pachd": data.pachd,
        "test_commit": data.test_commit,
        "generated_at": data.generated_at,
        "models": len(data.results),
        "cells": grid.cells,
        "c_values": list(grid.cs),
        "gamma_values": list(grid.gammas),
        "best": {"model": best.name, "accuracy": best.accuracy, "cv_accuracy": best.cv}
        if best else None,
        "selected": sorted(r.name for r in data.results if r.selected),
        "selection_rule": data.selection.rule if data.selection else "",
        "leaderboard": [
            {"model": r.name, "C": r.c, "gamma": r.gamma, "accuracy": r.accuracy,
             "cv_accuracy": r.cv, "selected": r.selected}
            for r in sorted(data.results, key=rank_key)  # select's order
        ],
        "graph": {
            "nodes": [{"name": n.name, "kind": n.kind, "state": n.state, "job_state": n.job_state,
                       "detail": n.detail} for n in graph.nodes],
            "edges": [list(e) for e in graph.edges],
        },
        "pipelines": [
            {"name": p.name, "state": p.state, "image": p.image, "source_commit": p.source_commit,
             "managed_by": p.managed_by, "version": p.version, "inputs": list(p.inputs),
             "jobs": [{"id": j.id, "state": j.state, "processed": j.processed,
                       "skipped": j.skipped, "failed": j.failed, "total": j.total,
                       "duration_s": j.duration_s} for j in p.jobs]}
            for p in data.pipelines
        ],
        "warnings": list(data.warnings),
    }
    if data.comparison:
        change = summarize_change(data.results, data.comparison.results)
        out["compare"] = {"commit": data.comparison.commit,
                          "models": len(data.comparison.results),
                          "cells_changed": change.changed, "improved": change.improved,
                          "worsened": change.worsened, "mean_change": change.mean_change,
                          "newly_selected": list(change.newly_selected),
                          "no_longer_selected": list(change.no_longer_selected),
                          "best_before": change.best_before, "best_now": change.best_now}
    return out


def write_report(data: ReportData, out_dir: Path) -> ReportFiles:
    """Draw every image into out_dir and write report.html there; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}
    scored = has_cv(data.results)
    images["heatmap"] = render_heatmap(build_grid(data.results), out_dir / "heatmap.png",
                                       "Test accuracy by C and gamma",
                                       note=TIE_NOTE if scored else "")  # fmt: skip
    if scored:
        images["cv"] = render_heatmap(build_cv_grid(data.results), out_dir / CV_NAME,
                                      "Cross-validated accuracy on the training split",
                                      value_label="cross-validated accuracy (5 folds)",
                                      tie_word=None)  # fmt: skip
    else:  # an older select without scores: no stale picture beside the new page
        (out_dir / CV_NAME).unlink(missing_ok=True)
    graph = build_graph(data.pipelines, data.repos)
    images["dag"] = render_dag(graph, layout(graph), out_dir / "dag.png")
    if data.comparison:
        short = data.comparison.commit[:12]
        images["compare"] = render_heatmap(build_grid(data.comparison.results),
                                           out_dir / COMPARE_NAME,
                                           f"Test accuracy at commit {short}")
        images["diff"] = render_heatmap(diff_grid(data.results, data.comparison.results),
                                        out_dir / DIFF_NAME,
                                        f"Accuracy change: now minus {short}", diff=True)
    else:  # a previous --compare run's pictures would otherwise linger beside the new page
        for stale in (COMPARE_NAME, DIFF_NAME):
            (out_dir / stale).unlink(missing_ok=True)
    html_path = out_dir / HTML_NAME
    partial = out_dir / f".{HTML_NAME}.partial"  # a reader never sees half a page
    partial.write_text(build_page(data, images, summary(data, graph)), encoding="utf-8")
    partial.replace(html_path)
    return ReportFiles(html_path, images["heatmap"], images["dag"], images.get("compare"),
                       images.get("diff"), images.get("cv"))
