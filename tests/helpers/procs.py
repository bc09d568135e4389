"""Processes as tests see them: whether a pid still runs, and the datum run of a `python -m`
target.

Used by the localpachd service, spout and batching tests (`alive`) and the warm runtime tests
(`module_run`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from localpachd.runtime import DatumRun


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a reaped or ended process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def module_run(progs: Path, cwd: Path, module: str) -> DatumRun:
    """A datum that runs `python -m module` in `cwd` (created) with `progs` on PYTHONPATH; its
    stdout and stderr go to `cwd/out.log`."""
    cwd.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(progs)}
    return DatumRun(argv=(sys.executable, "-m", module), env=env, cwd=cwd, stdin=None,
                    stdout_path=cwd / "out.log", stderr_path=cwd / "out.log")  # fmt: skip
