"""Draws the pipeline DAG as a PNG with matplotlib patches and arrows (no graphviz needed).

Called by `agent.report.render` with a `Graph` and its `Layout` from `agent.report.graph`.
Columns are layers (data flows left to right); repos are drawn as grey rounded boxes, pipelines
as boxes coloured by the state of their last job, each with its pipeline state and the last
job's datum counts. One layout unit is one inch, so the figure grows with the graph:
`dag_pixels()` tells its exact size.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

from agent.report.graph import Graph, Layout, Node  # noqa: E402

DPI = 100
COL_W, ROW_H = 3.6, 1.5  # inches between layer columns / rows
BOX_W, BOX_H = 2.9, 1.05  # node box size in inches
MARGIN = 0.3

# Fill colours by the last job's state (pipelines) — green done, amber busy, red broken.
JOB_COLOURS = {
    "SUCCESS": "#c8ecc9",
    "RUNNING": "#ffe3a3",
    "STARTING": "#ffe3a3",
    "CREATED": "#ffe3a3",
    "FINISHING": "#ffe3a3",
    "EGRESSING": "#ffe3a3",
    "FAILURE": "#f7b4b4",
    "KILLED": "#f0c9a8",
    "UNRUNNABLE": "#f7b4b4",
}
REPO_COLOUR = "#e3e7ee"
IDLE_COLOUR = "#f4f4f4"


def figure_inches(lay: Layout) -> tuple[float, float]:
    return (max(1, lay.layers) * COL_W - (COL_W - BOX_W) + 2 * MARGIN,
            max(1, lay.height) * ROW_H - (ROW_H - BOX_H) + 2 * MARGIN + 0.35)


def dag_pixels(lay: Layout) -> tuple[int, int]:
    """(width, height) in pixels of the PNG `render_dag` writes for this layout."""
    w, h = figure_inches(lay)
    return round(w * DPI), round(h * DPI)


def _centre(lay: Layout, name: str, height: float) -> tuple[float, float]:
    x = MARGIN + lay.layer[name] * COL_W + BOX_W / 2
    y = height - MARGIN - 0.35 - lay.slot[name] * ROW_H - BOX_H / 2
    return x, y


def _draw_node(ax: Axes, node: Node, x: float, y: float) -> None:
    if node.kind == "repo":
        fill, lines = REPO_COLOUR, [node.name, "input repo"]
        style = "round,pad=0.02,rounding_size=0.25"
    else:
        fill = JOB_COLOURS.get(node.job_state, IDLE_COLOUR)
        state = node.state or "UNKNOWN"
        job = f"last job {node.job_state}" if node.job_state else "no job"
        lines = [node.name, f"{state} · {job}", node.detail, node.runs]
        style = "round,pad=0.02,rounding_size=0.08"
    ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle=style,
                                facecolor=fill, edgecolor="#44546a", linewidth=1.2, zorder=2))
    ax.text(x, y + BOX_H * 0.28, lines[0], ha="center", va="center", fontsize=11,
            fontweight="bold", zorder=3)
    for k, line in enumerate(lines[1:]):
        ax.text(x, y + BOX_H * (0.04 - 0.19 * k), line, ha="center", va="center", fontsize=8,
                color="#555" if k == 2 else "#222", zorder=3)


def _draw_edge(ax: Axes, lay: Layout, a: str, b: str, height: float) -> None:
    """A polyline from a's right side to b's left side, crossing each skipped layer in its row."""
    (xa, ya), (xb, yb) = _centre(lay, a, height), _centre(lay, b, height)
    points = [(xa + BOX_W / 2, ya)]
    for dummy in lay.routes.get((a, b), ()):
        x, y = _centre(lay, dummy, height)
        points += [(x - BOX_W / 2, y), (x + BOX_W / 2, y)]
    points.append((xb - BOX_W / 2, yb))
    codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
    ax.add_patch(FancyArrowPatch(path=MplPath(points, codes), arrowstyle="-|>",
                                 mutation_scale=14, linewidth=1.3, color="#44546a", zorder=1))


def render_dag(graph: Graph, lay: Layout, path: Path, title: str = "Pipeline graph") -> Path:
    """Write the DAG PNG (size `dag_pixels(lay)`)."""
    w, h = figure_inches(lay)
    fig = plt.figure(figsize=(w, h), dpi=DPI)
    try:
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_xlim(0, w)
        ax.set_ylim(0, h)
        ax.axis("off")
        ax.text(MARGIN, h - 0.22, title, fontsize=11, fontweight="bold", va="center")
        for a, b in graph.edges:
            _draw_edge(ax, lay, a, b, h)
        for node in graph.nodes:  # dummies are in the layout only, never in graph.nodes
            _draw_node(ax, node, *_centre(lay, node.name, h))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path
