"""Start and stop the one long-lived process of a spout or service pipeline.

Called only by `localpachd.longrun.Supervisor` (the runtimes are the only modules that start
processes). The process runs in its own session, so a stop reaches everything it started; its
stdout and stderr are appended to one log file.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

Process = subprocess.Popen[bytes]
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def spawn(argv: Sequence[str], stdin: bytes | None, env: Mapping[str, str], cwd: Path,
          log_path: Path) -> Process | None:  # fmt: skip
    """The started process, or None (the reason appended to the log) if it cannot start."""
    cwd.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=dict(env), stdout=log, stderr=log,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:  # not found, not executable
            log.write(f"localpachd: cannot start {argv[0]!r}: {exc}\n".encode())
            return None
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
        except OSError:
            pass  # the process exited before reading: its exit is seen by the supervisor
        finally:
            proc.stdin.close()
    return proc


def stop(proc: Process, grace: float = STOP_GRACE) -> None:
    """End the process group: SIGTERM, then SIGKILL after `grace` seconds; reaps the process."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
