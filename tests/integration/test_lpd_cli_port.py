"""`localpachd serve --port N` outside 0..65535 fails at once with one error line and exit 2
(grpc used to bind a random port instead and report success)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_out_of_range_port_is_a_usage_error(tmp_path: Path, port: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "localpachd", "serve", "--port", port,
                           "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"localpachd: --port {port} is not a TCP port: use 0..65535 (0 = any free port)"]
    assert not (tmp_path / "data").exists()
