"""Screenshots of a report page in headless Chromium, for `pachsync report --screenshot` and tests.

Nothing is ever installed here: `find_chromium()` returns None when no browser is on the machine
and callers decide (the command fails with a hint, tests skip with a reason). The browser runs
with a throw-away profile and every network feature off, so it reads only the local file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from agent.errors import PachsyncError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio",
)  # fmt: skip


def find_chromium() -> str | None:
    """$PACHSYNC_CHROMIUM, else the first Chromium/Chrome on PATH, else /usr/bin/chromium."""
    env = os.environ.get("PACHSYNC_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def screenshot(html: Path, png: Path, size: tuple[int, int] = (1400, 2000),
               timeout_s: float = 120.0) -> Path:  # fmt: skip
    """Render `html` at `size` (width, height in CSS pixels) into `png`."""
    browser = find_chromium()
    if browser is None:
        raise PachsyncError(
            "no Chromium found for the screenshot",
            hint="install Debian's `chromium` package or set PACHSYNC_CHROMIUM",
        )
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="pachsync-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png.resolve()}",
               f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise PachsyncError(f"{browser} did not finish the screenshot in {timeout_s:.0f} s") \
                from exc  # fmt: skip
    if proc.returncode != 0 or not png.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise PachsyncError(f"{browser} exited {proc.returncode} without a screenshot:\n{tail}")
    return png
