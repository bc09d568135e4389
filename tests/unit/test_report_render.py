"""Rendering the report from synthetic data: valid PNGs of the expected size, the page's content."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers.iris import C_VALUES, GAMMA_VALUES
from helpers.report import data_island
from PIL import Image

from agent.report.dag import dag_pixels, render_dag
from agent.report.graph import build_graph, layout
from agent.report.heatmap import OUTLINE, PIXELS, render_heatmap
from agent.report.model import (
    Comparison,
    JobView,
    ModelResult,
    PipelineView,
    ReportData,
    Selection,
    build_grid,
    results_from_metrics,
)
from agent.report.render import write_report

C, G = C_VALUES, GAMMA_VALUES
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _accuracy(c: float, g: float) -> float:
    return round(
        0.33 + 0.64 * math.exp(-((math.log10(c) - 1.5) ** 2 + (math.log10(g) + 1.2) ** 2) / 3), 4
    )


def _metrics(shift: float = 0.0) -> dict[str, float]:
    return {f"model_C{c}_G{g}_metric.txt": _accuracy(c, g) - shift for c in C for g in G}


def synthetic(
    selected: tuple[str, ...] = ("model_C32.0_G0.063",), compare: bool = False
) -> ReportData:
    job = JobView("a" * 32, "SUCCESS", 70, 7, 0, 0, 77, 1000.0, 1012.5)
    pipes = (
        PipelineView(
            "split",
            "RUNNING",
            ("raw_data",),
            "acr.io/iris-stages:abc",
            "c0ffee" * 7,
            "src",
            1,
            (job,),
        ),
        PipelineView(
            "model",
            "RUNNING",
            ("split", "parameters"),
            "acr.io/iris-stages:abc",
            "c0ffee" * 7,
            "src",
            2,
            (job,),
        ),
        PipelineView("test", "RUNNING", ("split", "model"), "<b>bad</b>:1", "", "", 1, ()),
        PipelineView(
            "select", "CRASHING", ("test", "model"), "acr.io/iris-stages:abc", "", "", 1, ()
        ),
    )
    old = Comparison("b" * 32, results_from_metrics(_metrics(0.05))) if compare else None
    return ReportData(
        results_from_metrics(_metrics(), selected),
        Selection(selected, 0.97, "tolerance=0"),
        pipes,
        ("raw_data", "parameters"),
        "localhost:30650",
        "c" * 32,
        1000.0,
        old,
        ("select: no selected.json yet",),
    )


def _outline_pixels(png: Path) -> int:
    want = tuple(int(OUTLINE[i : i + 2], 16) for i in (1, 3, 5))
    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=int)
    return int((np.abs(rgb - np.array(want)).max(axis=2) < 30).sum())


def test_report_files_are_valid_pngs_of_the_expected_size(tmp_path: Path) -> None:
    data = synthetic(compare=True)
    files = write_report(data, tmp_path / "out")
    assert [p.name for p in files.all()] == [
        "report.html",
        "heatmap.png",
        "dag.png",
        "heatmap_compare.png",
        "heatmap_diff.png",
    ]
    graph = build_graph(data.pipelines, data.repos)
    expected = {
        files.heatmap: PIXELS,
        files.compare: PIXELS,
        files.diff: PIXELS,
        files.dag: dag_pixels(layout(graph)),
    }
    for png, size in expected.items():
        assert png is not None
        assert png.read_bytes()[:8] == PNG_MAGIC
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            assert img.size == size, png.name
    assert PIXELS == (900, 700)
    assert dag_pixels(layout(graph)) == (1790, 350)


def png_size(png: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, read with struct (independent of PIL)."""
    head = png.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", png.name
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _chain(n: int) -> tuple[PipelineView, ...]:
    """raw -> p0 -> p1 -> ... -> p(n-1): n + 1 layers of one row each."""
    return tuple(PipelineView(f"p{i}", "RUNNING", ("raw" if i == 0 else f"p{i - 1}",))
                 for i in range(n))  # fmt: skip


def _fan(k: int) -> tuple[PipelineView, ...]:
    """raw -> f0 .. f(k-1): two layers, k rows."""
    return tuple(PipelineView(f"f{i}", "RUNNING", ("raw",)) for i in range(k))


# One layout unit is one inch at 100 dpi (agent.report.dag): a layer column adds 3.6 in, a row
# 1.5 in; a single box with its margins and title is 2.9 + 0.6 in wide, 1.05 + 0.6 + 0.35 tall.
@pytest.mark.parametrize(
    ("pipelines", "size"),
    [
        (_chain(1), (710, 200)),
        (_chain(2), (1070, 200)),
        (_chain(6), (2510, 200)),
        (_fan(3), (710, 500)),
        (_fan(6), (710, 950)),
    ],
    ids=["chain1", "chain2", "chain6", "fan3", "fan6"],
)
def test_dag_png_grows_with_the_graph(
    tmp_path: Path, pipelines: tuple[PipelineView, ...], size: tuple[int, int]
) -> None:
    graph = build_graph(pipelines)
    png = render_dag(graph, layout(graph), tmp_path / "dag.png")
    assert png_size(png) == size == dag_pixels(layout(graph))
    width, height = size
    assert 100 < width < 20_000 and 100 < height < 20_000  # sane for a page


def test_page_embeds_every_image_and_lists_all_77_models(tmp_path: Path) -> None:
    files = write_report(synthetic(compare=True), tmp_path)
    html = files.html.read_text()
    assert html.count('src="data:image/png;base64,') == 4
    assert "http://" not in html and "https://" not in html  # self-contained
    assert "default-src 'none'; img-src data:" in html  # and the browser holds it to that
    assert len(re.findall(r'<tr(?: class="selected")? data-model=', html)) == 77
    assert re.findall(r'<tr class="selected" data-model="([^"]+)"', html) == ["model_C32.0_G0.063"]
    data = data_island(html)
    assert data["cells"] == 77 and data["models"] == 77
    assert data["selected"] == ["model_C32.0_G0.063"]
    assert data["best"]["model"] == "model_C32.0_G0.063"
    assert [row["accuracy"] for row in data["leaderboard"]] == sorted(
        (row["accuracy"] for row in data["leaderboard"]), reverse=True
    )
    assert data["compare"]["cells_changed"] == 77
    assert data["compare"]["mean_change"] == pytest.approx(0.05)
    assert (data["compare"]["improved"], data["compare"]["worsened"]) == (77, 0)
    assert data["compare"]["newly_selected"] == ["model_C32.0_G0.063"]
    assert 'id="compare"' in html and "77 of 77 models changed accuracy (77 better" in html
    assert len(data["graph"]["edges"]) == 7 and len(data["graph"]["nodes"]) == 6


def test_page_shows_jobs_commits_and_images_and_escapes_cluster_text(tmp_path: Path) -> None:
    write_report(synthetic(compare=True), tmp_path)  # an earlier run with --compare
    html = write_report(synthetic(), tmp_path).html.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dag.png", "heatmap.png", "report.html"]
    assert "<b>bad</b>" not in html and "&lt;b&gt;bad&lt;/b&gt;" in html
    assert html.count('data-job="' + "a" * 32 + '"') == 2
    assert "12.5 s" in html and "acr.io/iris-stages:abc" in html
    assert ("c0ffee" * 7)[:12] in html
    assert "select: no selected.json yet" in html
    assert "heatmap_compare.png" not in html  # no --compare, no comparison section
    assert 'id="compare"' not in html


def test_selected_models_are_outlined(tmp_path: Path) -> None:
    def pixels(selected: tuple[str, ...], name: str) -> int:
        grid = build_grid(results_from_metrics(_metrics(), selected))
        return _outline_pixels(render_heatmap(grid, tmp_path / name, "t"))

    none = pixels((), "none.png")
    one = pixels(("model_C32.0_G0.063",), "one.png")
    three = pixels(("model_C32.0_G0.063", "model_C0.031_G4.0", "model_C2.0_G1.0"), "three.png")
    assert none < 50  # only the best-value label's border uses the colour
    assert one > none + 300
    assert three > one + 600


def test_an_empty_cluster_still_renders_a_page(tmp_path: Path) -> None:
    files = write_report(ReportData(results=()), tmp_path)
    data = data_island(files.html.read_text())
    assert (data["models"], data["cells"], data["best"]) == (0, 0, None)
    with Image.open(files.heatmap) as img:
        assert img.size == PIXELS


def test_non_positive_parameters_and_big_grids_still_render(tmp_path: Path) -> None:
    zero = [ModelResult(f"m{i}", c, 1.0, 0.5 + i / 10) for i, c in enumerate((0.0, 1.0, 2.0))]
    big = [ModelResult(f"b{i}_{j}", 2.0**i, 2.0**j, (i + j) / 80) for i in range(40)
           for j in range(40)]  # fmt: skip
    for name, results in (("zero.png", zero), ("big.png", big)):
        png = render_heatmap(build_grid(results), tmp_path / name, name)
        with Image.open(png) as img:
            assert img.size == PIXELS
    assert build_grid(big).cells == 1600
