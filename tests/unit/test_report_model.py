"""The report's data model: model names -> (C, gamma), results ordering, the C x gamma grid."""

from __future__ import annotations

import pytest
from helpers.iris import C_VALUES, GAMMA_VALUES

from agent.report.model import (
    ModelResult,
    build_grid,
    diff_grid,
    format_param,
    model_stem,
    parse_model_name,
    results_from_metrics,
    summarize_change,
)

C, G = C_VALUES, GAMMA_VALUES


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model_C0.5_G0.016", (0.5, 0.016)),
        ("model_C32768.0_G4.0.pkl", (32768.0, 4.0)),
        ("model_C0.031_G0.001_metric.txt", (0.031, 0.001)),
        ("/model_C2.0_G1.0_metric.txt", (2.0, 1.0)),
        ("model_C1e-05_G0.25", (1e-05, 0.25)),
    ],
)
def test_parse_model_name_reads_c_and_gamma(name: str, expected: tuple[float, float]) -> None:
    assert parse_model_name(name) == expected


@pytest.mark.parametrize(
    "name", ["leaderboard.csv", "model_Cx_G1.0", "model_C1.0", "selected.json"]
)
def test_names_that_are_not_models_are_rejected(name: str) -> None:
    assert model_stem(name) is None
    with pytest.raises(ValueError, match="model"):
        parse_model_name(name)


def test_results_are_best_first_and_carry_the_selection() -> None:
    metrics = {
        "model_C2.0_G1.0_metric.txt": 0.9,
        "model_C0.5_G1.0_metric.txt": 0.95,
        "model_C8.0_G1.0_metric.txt": 0.95,
        "leaderboard.csv": 1.0,
    }
    results = results_from_metrics(metrics, selected=["model_C0.5_G1.0.pkl", "model_C8.0_G1.0"])
    assert [r.name for r in results] == ["model_C0.5_G1.0", "model_C8.0_G1.0", "model_C2.0_G1.0"]
    assert [r.selected for r in results] == [True, True, False]
    assert results[0] == ModelResult("model_C0.5_G1.0", 0.5, 1.0, 0.95, True)


def test_grid_has_77_cells_with_axes_ascending() -> None:
    metrics = {f"model_C{c}_G{g}_metric.txt": c * g / 1e5 for c in reversed(C) for g in G}
    grid = build_grid(results_from_metrics(metrics, ["model_C32768.0_G4.0"]))
    assert grid.cells == 77
    assert grid.cs == tuple(C) and grid.gammas == tuple(G)
    assert len(grid.values) == 11 and all(len(row) == 7 for row in grid.values)
    assert grid.values[3][5] == pytest.approx(2.0 * 1.0 / 1e5)
    assert grid.selected == frozenset({(10, 6)})
    assert grid.best() == (10, 6, pytest.approx(32768.0 * 4.0 / 1e5))


def test_missing_models_leave_empty_cells() -> None:
    grid = build_grid([ModelResult("a", 1.0, 1.0, 0.5), ModelResult("b", 2.0, 4.0, 0.7)])
    assert grid.values == ((0.5, None), (None, 0.7))
    assert grid.cells == 2


def test_diff_grid_is_new_minus_old_on_the_union_of_axes() -> None:
    new = [ModelResult("a", 1.0, 1.0, 0.9, True), ModelResult("b", 2.0, 1.0, 0.6)]
    old = [ModelResult("a", 1.0, 1.0, 0.7), ModelResult("c", 4.0, 1.0, 0.5)]
    grid = diff_grid(new, old)
    assert grid.cs == (1.0, 2.0, 4.0)
    assert grid.values[0][0] == pytest.approx(0.2)
    assert grid.values[1][0] is None and grid.values[2][0] is None
    assert grid.selected == frozenset({(0, 0)})


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.031, "0.031"), (0.5, "0.5"), (32768.0, "32768"), (2.0, "2"), (1e-05, "0.00001")],
)
def test_parameters_are_labelled_with_their_real_values(value: float, text: str) -> None:
    assert format_param(value) == text


def test_change_summary_counts_moves_and_selection_changes() -> None:
    old = [
        ModelResult("a", 1.0, 1.0, 0.9, True),
        ModelResult("b", 2.0, 1.0, 0.8),
        ModelResult("c", 4.0, 1.0, 0.7),
        ModelResult("gone", 8.0, 1.0, 0.1),
    ]
    new = [
        ModelResult("a", 1.0, 1.0, 0.85),
        ModelResult("b", 2.0, 1.0, 0.95, True),
        ModelResult("c", 4.0, 1.0, 0.7),
        ModelResult("new", 16.0, 1.0, 0.5),
    ]
    ch = summarize_change(new, old)
    assert (ch.common, ch.changed, ch.improved, ch.worsened) == (3, 2, 1, 1)
    assert ch.mean_change == pytest.approx((-0.05 + 0.15) / 2)
    assert (ch.newly_selected, ch.no_longer_selected) == (("b",), ("a",))
    assert (ch.added, ch.removed) == (("new",), ("gone",))
    assert (ch.best_before, ch.best_now) == (0.9, 0.95)
