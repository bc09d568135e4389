"""The report of a real demo run: 77 cells, select's selection, the specs' graph, a real browser.

One `pachsync demo` (localpachd as a child process, the 77-model search) is shared by the tests
of this module. The demo writes the report itself; afterwards localpachd is started again on the
same data dir (its state is durable) to read select's selected.json as the ground truth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers.report import data_island
from PIL import Image

from agent.report.browser import find_chromium, screenshot
from agent.report.heatmap import PIXELS
from agent.report.model import model_stem
from agent.specs import load_desired

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@dataclass(frozen=True)
class DemoRun:
    out: Path  # the report folder the demo wrote
    stdout: str
    page: dict[str, Any]  # the page's JSON data island
    selected_json: dict[str, Any]  # select's own output, read back from the server


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    base = tmp_path_factory.mktemp("report-demo")
    data_dir, out = base / "pachd", base / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--data-dir", str(data_dir), "--report-dir",
         str(out), "--timeout", "900"],
        cwd=ROOT, capture_output=True, text=True, timeout=1100, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    import python_pachyderm

    from localpachd.server import start

    server = start(data_dir=data_dir, host="127.0.0.1", port=0)
    try:
        client = python_pachyderm.Client(host=server.host, port=server.port)
        selected = json.loads(client.get_file(("select", "master"), "/selected.json").read())
    finally:
        server.stop()
    page = data_island((out / "report.html").read_text(encoding="utf-8"))
    yield DemoRun(out, proc.stdout, page, selected)


def test_report_shows_all_77_models_and_selects_exactly_selects_choice(demo: DemoRun) -> None:
    page = demo.page
    assert page["models"] == 77 and page["cells"] == 77
    assert len(page["c_values"]) == 11 and len(page["gamma_values"]) == 7
    expected = sorted(model_stem(n) or n for n in demo.selected_json["selected"])
    assert page["selected"] == expected and expected
    assert page["best"]["accuracy"] == pytest.approx(demo.selected_json["best_accuracy"])
    board = page["leaderboard"]
    ranks = [(r["accuracy"], r["cv_accuracy"]) for r in board]
    assert ranks == sorted(ranks, reverse=True)  # select's order: accuracy, then cv accuracy
    assert {r["model"] for r in board if r["selected"]} == set(expected)
    # the tie-breaker: of the 40 models at accuracy 1.0, the 4 with the best cross-validated
    # accuracy (the C x gamma = 0.5 ridge); the best is the simplest of them
    assert len(demo.selected_json["tied"]) == 40 and expected == sorted(
        ["model_C8.0_G0.063", "model_C32.0_G0.016", "model_C128.0_G0.004", "model_C512.0_G0.001"])
    assert page["best"] == {"model": "model_C8.0_G0.063", "accuracy": 1.0, "cv_accuracy": 0.975}
    assert page["warnings"] == []


def test_graph_equals_the_specs_and_shows_the_jobs(demo: DemoRun) -> None:
    desired = load_desired(ROOT / "specs")
    nodes = {r.name for r in desired.repos} | {p.name for p in desired.pipelines}
    edges = {(i, p.name) for p in desired.pipelines for i in p.inputs}
    graph = demo.page["graph"]
    assert {n["name"] for n in graph["nodes"]} == nodes
    assert {tuple(e) for e in graph["edges"]} == edges
    kinds = {n["name"]: n["kind"] for n in graph["nodes"]}
    assert {n for n, k in kinds.items() if k == "repo"} == {r.name for r in desired.repos}
    pipelines = {p["name"]: p for p in demo.page["pipelines"]}
    datums = {"split": 1, "model": 77, "test": 77, "select": 1}
    for name, total in datums.items():
        job = pipelines[name]["jobs"][0]
        assert job["state"] == "SUCCESS", name
        assert (job["total"], job["processed"] + job["skipped"], job["failed"]) == (total, total, 0)
        assert pipelines[name]["image"].startswith("pachsyncdemo.azurecr.io/iris-stages:")
        assert pipelines[name]["source_commit"], f"{name} has no pachsync.io/source-commit"


def test_report_images_are_valid_pngs(demo: DemoRun) -> None:
    for name in ("heatmap.png", "heatmap_cv.png", "dag.png"):
        with Image.open(demo.out / name) as img:
            img.verify()
    for name in ("heatmap.png", "heatmap_cv.png"):
        with Image.open(demo.out / name) as img:
            assert img.size == PIXELS
    html = (demo.out / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 3  # accuracy, cv accuracy, graph
    assert "report.html" in demo.stdout


NO_BROWSER = "no headless Chromium on this machine (Debian: apt-get install chromium)"


@pytest.mark.skipif(find_chromium() is None, reason=NO_BROWSER)
def test_real_report_opens_in_headless_chromium(demo: DemoRun, tmp_path: Path) -> None:
    import numpy as np

    png = screenshot(demo.out / "report.html", tmp_path / "report.png", size=(1400, 2000))
    with Image.open(png) as img:
        assert img.size == (1400, 2000)
        grey = np.asarray(img.convert("L"), dtype=float)
    assert grey.std() > 20, f"the screenshot looks blank (pixel std {grey.std():.1f})"
    assert grey[:40].mean() < 100 < grey[-100:].mean()  # dark header bar, light page
    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=int)
    colourful = int(((rgb.max(axis=2) - rgb.min(axis=2)) > 100).sum())
    assert colourful > 50_000, "the embedded heatmap is not displayed"
