"""The report page opens in a real headless Chromium and shows something (not a blank page).

Uses synthetic data (no server): the e2e test does the same on a report of a real demo run.
Skips with a reason when no Chromium is installed; it never installs one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.report.browser import find_chromium, screenshot
from agent.report.render import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_report_render import synthetic  # noqa: E402

pytestmark = pytest.mark.browser


def assert_not_blank(png: Path, size: tuple[int, int]) -> None:
    with Image.open(png) as img:
        assert img.size == size
        grey = np.asarray(img.convert("L"), dtype=float)
    assert grey.std() > 20, f"screenshot looks blank (pixel std {grey.std():.1f})"
    # Several distinct regions: the header bar is dark, the page background light.
    assert grey[:40].mean() < 100 < grey[-200:].mean()
    # The embedded heatmap really displays (the page's CSP allows data: images): its saturated
    # colours cover a large area, which the page's own greys and small badges never do.
    assert colourful_pixels(png) > 50_000


def colourful_pixels(png: Path) -> int:
    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 100).sum())


NO_BROWSER = "no headless Chromium on this machine (Debian: apt-get install chromium)"


@pytest.mark.skipif(find_chromium() is None, reason=NO_BROWSER)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    files = write_report(synthetic(compare=True), tmp_path / "out")
    png = screenshot(files.html, tmp_path / "shot.png", size=(1280, 1600))
    assert_not_blank(png, (1280, 1600))
