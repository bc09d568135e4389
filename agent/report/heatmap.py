"""Draws the accuracy heatmap (C rows x gamma columns), the cross-validated accuracy heatmap (the
tie-breaker) and the difference heatmap as PNG files.

Called by `agent.report.render`. matplotlib with the Agg backend only (no display needed). Both
axes are truly log-scaled: cell edges sit at the geometric midpoints between parameter values,
and the ticks are labelled with the real values (0.031 ... 32768), so the picture reads like the
search space it came from. The figure has a fixed pixel size (FIGSIZE x DPI) so pages lay out
predictably and tests can check the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from agent.report.model import Grid, format_param  # noqa: E402

FIGSIZE = (9.0, 7.0)  # inches
DPI = 100
PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))  # (width, height) of every heatmap PNG
OUTLINE = "#ff2d55"


def _edges(values: tuple[float, ...]) -> np.ndarray:
    """Cell edges on a log axis: geometric midpoints, outer edges mirrored."""
    if len(values) == 1:
        return np.array([values[0] / 2, values[0] * 2])
    logs = np.log10(np.array(values, dtype=float))
    mids = (logs[:-1] + logs[1:]) / 2
    first, last = logs[0] - (mids[0] - logs[0]), logs[-1] + (logs[-1] - mids[-1])
    return np.asarray(10 ** np.concatenate([[first], mids, [last]]))


@dataclass(frozen=True)
class _Axis:
    """Where cells and ticks go on one axis. Log scale when every value is positive (always,
    for C and gamma); otherwise evenly spaced cells labelled with the values."""

    edges: np.ndarray
    centres: np.ndarray  # where a cell's text goes
    ticks: np.ndarray  # where a value's label goes
    log: bool


def _axis(values: tuple[float, ...]) -> _Axis:
    values = values or (1.0,)
    if all(v > 0 for v in values):
        edges = _edges(values)
        return _Axis(edges, np.sqrt(edges[:-1] * edges[1:]), np.array(values), True)
    index = np.arange(len(values), dtype=float)
    return _Axis(np.arange(len(values) + 1) - 0.5, index, index, False)


def _matrix(grid: Grid) -> np.ma.MaskedArray:
    raw = np.array([[np.nan if v is None else v for v in row] for row in grid.values], dtype=float)
    return np.ma.masked_invalid(raw)


def _text_colour(rgba: tuple[float, float, float, float]) -> str:
    r, g, b, _ = rgba
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _annotate_cells(ax: Axes, grid: Grid, xa: _Axis, ya: _Axis, mesh: object,
                    diff: bool) -> None:
    cmap, norm = mesh.cmap, mesh.norm  # type: ignore[attr-defined]
    size = min(8.0, 90.0 / max(len(grid.cs), len(grid.gammas)))
    if size < 4.5:
        return  # too many cells to label legibly; the colour scale says it all
    for i, row in enumerate(grid.values):
        for j, v in enumerate(row):
            x, y = xa.centres[j], ya.centres[i]
            if v is None:
                ax.text(x, y, "–", ha="center", va="center", fontsize=size, color="#666")
                continue
            label = f"{v:+.3f}" if diff else f"{v:.3f}"
            ax.text(x, y, label, ha="center", va="center", fontsize=size,
                    color=_text_colour(cmap(norm(v))))


def _outline_selected(ax: Axes, grid: Grid, xe: np.ndarray, ye: np.ndarray) -> None:
    for i, j in sorted(grid.selected):
        ax.add_patch(Rectangle((xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i],
                               fill=False, edgecolor=OUTLINE, linewidth=2.5, zorder=3))


def _mark_best(ax: Axes, grid: Grid, xa: _Axis, ya: _Axis, tie_word: str | None,
               note: str) -> str:  # fmt: skip
    best = grid.best()
    if best is None:
        return ""
    i, j, v = best
    x = xa.centres[j]
    ax.annotate(f"best {v:.3f}", xy=(x, ya.centres[i]), xytext=(x, ya.edges[i + 1]),
                textcoords="data", ha="center", va="bottom", fontsize=9,
                fontweight="bold", color="black", zorder=4,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": OUTLINE, "alpha": 0.9})
    ties = sum(1 for row in grid.values for w in row if w is not None and abs(w - v) < 1e-12)
    tied = ""
    if tie_word and ties > 1:  # short: the subtitle must fit the figure's width
        tied = f" (+{ties - 1} tied{', ' + note if note else ''})" if note else \
            f" (and {ties - 1} more with the same {tie_word})"  # fmt: skip
    return (f"best {v:.3f} at C={format_param(grid.cs[i])}, "
            f"gamma={format_param(grid.gammas[j])}{tied}")


def render_heatmap(grid: Grid, path: Path, title: str, *, diff: bool = False,
                   value_label: str = "test accuracy", tie_word: str | None = "accuracy",
                   note: str = "") -> Path:  # fmt: skip
    """Write one heatmap PNG of exactly PIXELS; `diff` uses a diverging scale centred on 0.

    `value_label` names the colour scale, `tie_word` what the best cell's ties share (None: no
    tie count), `note` says how those ties were broken (shown only when there are ties)."""
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        xa, ya = _axis(grid.gammas), _axis(grid.cs)
        xe, ye = xa.edges, ya.edges
        data = _matrix(grid) if grid.values else np.ma.masked_invalid(np.full((1, 1), np.nan))
        if diff:
            span = float(np.ma.max(np.ma.abs(data))) if data.count() else 0.0
            span = span or 0.01
            mesh = ax.pcolormesh(xe, ye, data, cmap="RdBu", vmin=-span, vmax=span)
        else:
            mesh = ax.pcolormesh(xe, ye, data, cmap="viridis")
        ax.set_facecolor("#e6e6e6")  # cells without a model
        if xa.log:
            ax.set_xscale("log")
        if ya.log:
            ax.set_yscale("log")
        ax.set_xticks(list(xa.ticks), [format_param(g) for g in grid.gammas or (1.0,)])
        ax.set_yticks(list(ya.ticks), [format_param(c) for c in grid.cs or (1.0,)])
        ax.minorticks_off()
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
        ax.set_xlabel("gamma" + (" (log scale)" if xa.log else ""))
        ax.set_ylabel("C" + (" (log scale)" if ya.log else ""))
        if grid.values:
            _annotate_cells(ax, grid, xa, ya, mesh, diff)
            _outline_selected(ax, grid, xe, ye)
        subtitle = "" if diff else _mark_best(ax, grid, xa, ya, tie_word, note)
        ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
        bar = fig.colorbar(mesh, cax=fig.add_axes((0.86, 0.14, 0.025, 0.76)))
        bar.set_label("accuracy change" if diff else value_label)
        if grid.selected:
            handle = Line2D([], [], color=OUTLINE, linewidth=2.5, label="selected by select")
            ax.legend(handles=[handle], loc="upper left", bbox_to_anchor=(0.0, -0.08),
                      frameon=False, fontsize=9)
        fig.subplots_adjust(left=0.1, right=0.84, top=0.9, bottom=0.14)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path
