"""`localpachd serve --workers N --wait-slots M --wait-slots-per-peer K`: the server's handler
threads and wait slots from the command line, through a real `python -m localpachd serve`
subprocess and the unmodified python-pachyderm client. Bad values exit 2 with one line naming
the flag, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from helpers import pachd


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localpachd", "serve", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_help_names_the_thread_flags() -> None:
    out = _serve_cli("--help").stdout
    for flag in ("--workers N", "--wait-slots M", "--wait-slots-per-peer K"):
        assert flag in out
    assert "RESOURCE_EXHAUSTED" in out


@pytest.mark.parametrize("args,names", [
    (("--workers", "1"), "--workers"),
    (("--workers", "8", "--wait-slots", "8"), "--wait-slots"),
    (("--wait-slots", "0"), "--wait-slots"),
    (("--wait-slots-per-peer", "0"), "--wait-slots-per-peer"),
])  # fmt: skip
def test_bad_thread_options_exit_2_naming_the_flag(
    tmp_path: Path, args: tuple[str, ...], names: str
) -> None:
    done = _serve_cli("--port", "0", "--data-dir", str(tmp_path / "pachd"), *args)
    assert done.returncode == 2, done
    assert done.stderr.startswith("localpachd: ") and names in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "pachd").exists()  # refused before anything was opened


def test_one_wait_slot_given_on_the_command_line_is_the_only_one(tmp_path: Path) -> None:
    """With `--wait-slots 1`, a second SubscribeCommit is refused while the first one lasts
    (64 threads by default would serve both)."""
    proc, port = pachd.serve(tmp_path / "pachd", "--workers", "4", "--wait-slots", "1",
                             "--wait-slots-per-peer", "1")  # fmt: skip
    try:
        first, second = pachd.client(port), pachd.client(port)
        first.create_repo("r")
        with first.commit("r", "master") as c:
            first.put_file_bytes(c, "/a", b"a")
        holding = first.subscribe_commit("r", "master")
        next(iter(holding))  # the stream runs, so it holds the one slot
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(second.subscribe_commit("r", "master")))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "all 1 wait slots" in refused.value.details()
        assert second.inspect_repo("r").repo.name == "r"  # ordinary calls still served
    finally:
        pachd.stop(proc)
