"""GetLogs streams with bounded memory (issue 12, item 10): a datum writes ~40 MiB of log lines
and one 25 MiB line; GetLogs (whole, and with `tail`) returns every line through the unmodified
python-pachyderm client while the growth of the server's peak resident memory stays within a
small multiple of the longest line it keeps (`logs.MAX_LINE`). The over-long line is cut with a
marker instead of failing the call. The server is a real `python -m localpachd serve` subprocess
whose peak (VmHWM) is reset through /proc/<pid>/clear_refs before each call.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers.jobs import state, wait_jobs
from helpers.pachd import client, serve, stop
from lpd_pps_helpers import pfs, put
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.logs import MAX_LINE

MIB = 1024 * 1024
LINES, WIDTH = 10_000, 4096  # 40 MiB of ordinary lines
HUGE = 25 * MIB
GROWTH_LIMIT = 16 * MAX_LINE  # before the fix: ~27x the log, over 1 GiB here

WRITER = (
    "import sys\n"
    f"body = 'x' * {WIDTH - 9}\n"
    f"for i in range({LINES}):\n"
    "    sys.stdout.write(f'{i:08d} {body}\\n')\n"
    f"sys.stdout.write('H' * {HUGE} + '\\n')\n"
    "sys.stdout.write('last\\n')\n"
)


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _reset_peak(pid: int) -> int:
    """Reset the process's VmHWM to its current RSS (Linux clear_refs, value 5); returns it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status(pid, "VmRSS")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A served localpachd whose one job has logged the lines above (shared by the tests of
    this module: each resets the peak before its call)."""
    tmp_path = tmp_path_factory.mktemp("logs")
    proc, port = serve(tmp_path / "pachd")
    try:
        c = client(port)
        c.create_repo("data")
        put(c, "data", {"/a": "1"})
        (tmp_path / "writer.py").write_text(WRITER)
        c.create_pipeline("talk", transform=pps_pb2.Transform(
            cmd=["python3", str(tmp_path / "writer.py")]), input=pfs("data", "/"))  # fmt: skip
        job = wait_jobs(c, ["talk"], timeout=240)["talk"]
        assert state(job) == "JOB_SUCCESS", job.reason
        yield proc, c, job.job.id
    finally:
        stop(proc)
        shutil.rmtree(tmp_path / "pachd", ignore_errors=True)


def _drain(messages: Any) -> tuple[int, list[str], int]:
    """(count, the first 12 characters of the last 3 messages, longest message) without
    keeping the stream."""
    count, longest, last = 0, 0, ["", "", ""]
    for m in messages:
        count += 1
        longest = max(longest, len(m.message))
        last = [*last[1:], m.message[:12]]
    return count, last, longest


def test_get_logs_streams_40mib_and_a_25mib_line_with_bounded_memory(logged: Any) -> None:
    proc, c, job_id = logged
    base = _reset_peak(proc.pid)
    count, last, longest = _drain(c.get_job_logs("talk", job_id))
    growth = _status(proc.pid, "VmHWM") - base
    assert count == LINES + 2 + 2  # and the worker's two lines about the datum (sent first)
    assert last == [f"{LINES - 1:08d} xxx", "H" * 12, "last"]
    assert MAX_LINE <= longest < MAX_LINE + 200  # cut, with its marker
    assert growth < GROWTH_LIMIT, f"server peak grew by {growth // MIB} MiB"


def test_get_logs_tail_and_pipeline_scope_stay_bounded(logged: Any) -> None:
    proc, c, job_id = logged
    base = _reset_peak(proc.pid)
    tail = [m.message for m in c.get_pipeline_logs("talk", tail=3)]
    assert [t[:12] for t in tail] == [f"{LINES - 1:08d} xxx", "H" * 12, "last"]
    assert "line truncated" in tail[1] and f"{HUGE} bytes" in tail[1]
    assert len(tail[1]) < MAX_LINE + 200
    count, _last, _longest = _drain(c.get_pipeline_logs("talk", tail=LINES * 10))
    assert count == LINES + 2 + 2
    growth = _status(proc.pid, "VmHWM") - base
    assert growth < GROWTH_LIMIT, f"server peak grew by {growth // MIB} MiB"
