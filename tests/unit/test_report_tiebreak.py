"""The report ranks like stages.select: test accuracy, then cross-validated accuracy (read from
select's leaderboard.csv), then the simplest model; it shows the cross-validated accuracy in the
leaderboard and as a second heatmap.

The bug: with 40 models tied at accuracy 1.0 the report called the first in C order "best" and
sorted the leaderboard by C, whatever select's tie-breaker said.
"""

from __future__ import annotations

from pathlib import Path

from helpers.report import data_island
from PIL import Image

from agent.cluster.outputs import SelectOutputs
from agent.report.collect import cv_scores, selection_of
from agent.report.heatmap import PIXELS
from agent.report.model import (
    ModelResult,
    ReportData,
    build_cv_grid,
    build_grid,
    results_from_metrics,
)
from agent.report.render import CV_NAME, write_report

# Four models tie at accuracy 1.0; cross-validation ranks C=32 first, then C=8 and C=2 (tied),
# then C=0.5 (no score: last among the tied).
METRICS = {
    "model_C0.5_G1.0_metric.txt": 1.0,
    "model_C2.0_G1.0_metric.txt": 1.0,
    "model_C8.0_G0.1_metric.txt": 1.0,
    "model_C32.0_G0.1_metric.txt": 1.0,
    "model_C2.0_G0.1_metric.txt": 0.95,
    "model_C0.5_G0.1_metric.txt": 0.9,
}
CV = {
    "model_C2.0_G1.0": 0.95,
    "model_C8.0_G0.1": 0.95,
    "model_C32.0_G0.1": 0.975,
    "model_C2.0_G0.1": 1.0,
    "model_C0.5_G0.1": 0.9,
}
RANKED = [
    "model_C32.0_G0.1",
    "model_C2.0_G1.0",
    "model_C8.0_G0.1",
    "model_C0.5_G1.0",
    "model_C2.0_G0.1",
    "model_C0.5_G0.1",
]


def _board(rows: list[tuple[str, str, str]]) -> str:
    lines = ["model,C,gamma,accuracy,cv_accuracy,selected"]
    lines += [f"{m},1.0,1.0,1.0,{cv},{sel}" for m, cv, sel in rows]
    return "\n".join(lines) + "\n"


def test_results_rank_by_accuracy_then_cv_then_c_and_gamma() -> None:
    results = results_from_metrics(METRICS, ["model_C32.0_G0.1"], CV)
    assert [r.name for r in results] == RANKED
    assert results[0].cv == 0.975 and results[3].cv is None
    data = ReportData(tuple(reversed(results)))  # best is the ranking's, not the list's order
    assert data.best is not None and data.best.name == "model_C32.0_G0.1"


def test_the_heatmaps_best_cell_is_the_top_ranked_model_not_the_first_in_c_order() -> None:
    results = results_from_metrics(METRICS, (), CV)
    grid = build_grid(results)
    best = grid.best()
    assert best is not None
    i, j, value = best
    assert (grid.cs[i], grid.gammas[j], value) == (32.0, 0.1, 1.0)
    cv_grid = build_cv_grid(results)
    assert cv_grid.best() == (i, j, 0.975)  # the same model, with its cross-validated accuracy
    assert cv_grid.values[grid.cs.index(0.5)][grid.gammas.index(1.0)] is None  # unknown
    # without scores the old rule holds: the first in C, gamma order among the tied
    plain = build_grid(results_from_metrics(METRICS))
    first = plain.best()
    assert first is not None and (plain.cs[first[0]], plain.gammas[first[1]]) == (0.5, 1.0)


def test_cv_scores_come_from_the_leaderboard_column() -> None:
    board = _board([("m1", "0.975", "true"), ("m2", "", "false"), ("m3", "junk", "false"),
                    ("m4", "nan", "false"), ("m5", "0.5", "false")])  # fmt: skip
    assert cv_scores(board) == (("m1", 0.975), ("m5", 0.5))
    assert cv_scores("model,C,gamma,accuracy,selected\nm1,1,1,1.0,true\n") == ()  # older select
    assert cv_scores(None) == ()
    doc = {"rule": {"kind": "tolerance", "tolerance": 0.0, "tie_break": "cv"},
           "best_accuracy": 1.0, "selected": ["m1"]}  # fmt: skip
    for found in (SelectOutputs("c", doc, board), SelectOutputs("c", None, board)):
        sel = selection_of(found)
        assert sel is not None and sel.names == ("m1",) and dict(sel.cv)["m1"] == 0.975
    with_doc = selection_of(SelectOutputs("c", doc, board))
    assert with_doc is not None and with_doc.rule == "tolerance: tolerance=0.0, tie_break=cv"


def _rows(html: str) -> list[str]:
    body = html.split('<table id="leaderboard">', 1)[1].split("</table>", 1)[0]
    return [part.split('"', 1)[0] for part in body.split('data-model="')[1:]]


def test_page_shows_the_cv_heatmap_and_sorts_the_leaderboard_by_it(tmp_path: Path) -> None:
    results = results_from_metrics(METRICS, ["model_C32.0_G0.1"], CV)
    files = write_report(ReportData(tuple(reversed(results))), tmp_path)
    assert files.cv == tmp_path / CV_NAME and files.cv in files.all()
    with Image.open(files.cv) as image:
        assert image.size == PIXELS
    html = files.html.read_text()
    assert _rows(html) == RANKED
    assert "cv accuracy" in html and "0.9750" in html and CV_NAME in html
    island = data_island(html)
    assert island["best"] == {"model": "model_C32.0_G0.1", "accuracy": 1.0, "cv_accuracy": 0.975}
    assert [r["cv_accuracy"] for r in island["leaderboard"]][:4] == [0.975, 0.95, 0.95, None]


def test_without_scores_no_cv_heatmap_and_a_stale_one_is_removed(tmp_path: Path) -> None:
    (tmp_path / CV_NAME).write_bytes(b"old")
    plain = tuple(ModelResult(r.name, r.c, r.gamma, r.accuracy) for r in
                  results_from_metrics(METRICS))  # fmt: skip
    files = write_report(ReportData(plain), tmp_path)
    assert files.cv is None and not (tmp_path / CV_NAME).exists()
    assert CV_NAME not in files.html.read_text()
