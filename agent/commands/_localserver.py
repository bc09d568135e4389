"""Starting and stopping a localpachd server as a child process (never imported: C2's CLI).

Used by `pachsync demo`. Runs `python -m localpachd serve --port 0 --data-dir DIR`, sends its
output to DIR/localpachd.log and waits for the `listening on HOST:PORT` line. The agent and
localpachd stay separate programs, exactly as with a real pachd.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agent.errors import PachsyncError, UsageError

_LISTENING = re.compile(r"listening on (\S+):(\d+)")


@dataclass
class LocalServer:
    process: subprocess.Popen[bytes]
    address: str  # host:port
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_local(data_dir: Path, timeout: float = 60.0, detach: bool = False,
                extra: tuple[str, ...] = ()) -> LocalServer:
    """Start localpachd on a free port; returns once it listens (or raises with its log)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot use {data_dir} as localpachd's data dir: "
                         f"{exc.strerror or exc}",
                         hint="choose another --data-dir: a folder, or a path to create") from exc
    log = data_dir / "localpachd.log"
    cmd = [sys.executable, "-m", "localpachd", "serve", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(data_dir), *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=detach)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            # A detached server outlives us: leave its pid where scripts (and tests) find it.
            if detach:
                (data_dir / "localpachd.pid").write_text(f"{proc.pid}\n")
            return LocalServer(proc, f"{match.group(1)}:{match.group(2)}", log)
        if proc.poll() is not None:
            raise PachsyncError(f"localpachd exited with code {proc.returncode} before "
                                f"listening; its log ({log}):\n{_tail(log)}")
        time.sleep(0.05)
    proc.kill()
    raise PachsyncError(f"localpachd did not report `listening on` within {timeout:.0f}s; "
                        f"its log ({log}):\n{_tail(log)}")
