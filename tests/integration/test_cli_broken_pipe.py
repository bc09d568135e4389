"""`pachsync … | head`: a reader that goes away is not an error worth a traceback. Every
command that prints (validate, plan, status, apply --dry-run; text and JSON) runs as a real
subprocess whose stdout is a pipe nobody reads (its read end closed before the start, so the
first write fails, deterministically): it exits 141 (128 + SIGPIPE, what `yes | head` reports)
and writes nothing to stderr — no traceback, no "Exception ignored" at interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = str(ROOT / "specs")


def run_into_closed_pipe(*argv: str, unbuffered: bool) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    env = {**os.environ, "PYTHONUNBUFFERED": "1" if unbuffered else ""}
    try:
        return subprocess.run([sys.executable, "-m", "agent", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                              timeout=120, check=False)
    finally:
        os.close(write_end)


# Unbuffered, the first print fails; buffered, the flush at the end of the command does.
@pytest.mark.parametrize(("command", "unbuffered"), [
    (["validate", "--specs", SPECS], True), (["validate", "--specs", SPECS], False),
    (["plan", "--specs", SPECS, "--format", "json"], False), (["status"], True),
    (["status", "--format", "json"], False), (["apply", "--specs", SPECS, "--dry-run"], True),
])
def test_a_reader_that_goes_away_ends_the_command_quietly(
        command: list[str], unbuffered: bool, localpachd: Any) -> None:
    needs_pachd = command[0] in ("plan", "status", "apply")
    argv = [*command, "--pachd", localpachd.address] if needs_pachd else command
    proc = run_into_closed_pipe(*argv, unbuffered=unbuffered)
    assert (proc.returncode, proc.stderr) == (141, ""), proc.stderr
