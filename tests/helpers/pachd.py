"""localpachd as a real subprocess (`python -m localpachd serve`), for tests that kill, stop or
restart the server; tests that only need a default server use the in-process `localpachd`
fixture of tests/conftest.py, and tests that need server options use `in_process_client`.

Used by the runner's outage/process tests and localpachd's crash and durability tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import python_pachyderm

HOST = "127.0.0.1"  # localpachd binds only loopback by default
LISTENING = re.compile(r"listening on [\w.\[\]:-]*:(\d+)")


def serve(data_dir: Path, *args: str, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    """Starts the server (extra `serve` options in `args`) and returns it with the port it
    listens on, once it says so; its output keeps being drained so it never blocks on a pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "localpachd", "serve", "--port", str(port),
         "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # pytest's timeout guards a server that never comes up
        seen.append(line)
        match = LISTENING.search(line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(match.group(1))
    raise AssertionError(f"localpachd did not start: {''.join(seen)}")


def client(port: int) -> python_pachyderm.Client:
    return python_pachyderm.Client(host=HOST, port=port)


class LocalPachdProcess:
    """A `serve` subprocess that can be stopped and restarted on the same port and data dir
    (the first start picks a free port)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        self.proc, self.port = serve(self.data_dir, port=self.port)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop(self.proc)
        self.proc = None


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def in_process_client(data_dir: Path, **options: Any) -> Iterator[Any]:
    """A client of an in-process localpachd on a free port started with server `options`
    (runtime=..., max_parallelism=...); the server stops when the block ends."""
    from localpachd.server import start

    srv = start(data_dir=data_dir, port=0, **options)
    try:
        yield python_pachyderm.Client(host=srv.host, port=srv.port)
    finally:
        srv.stop()
