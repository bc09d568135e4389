"""`localpachd serve` stops cleanly on SIGINT (Ctrl-C) and SIGTERM: it exits 0, and a commit
finished before the signal is intact after a restart on the same data dir, through the unmodified
python-pachyderm client against a real `python -m localpachd serve` subprocess."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from helpers.pachd import client, serve, stop


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_exits_0_and_keeps_finished_commits(tmp_path: Path, signum: int) -> None:
    data_dir = tmp_path / "pachd"
    proc, port = serve(data_dir)
    try:
        c = client(port)
        c.create_repo("r", description="kept")
        with c.commit("r", "master") as commit:
            c.put_file_bytes(commit, "/a.txt", b"alpha")
            c.put_file_bytes(commit, "/dir/b.txt", b"beta")
        head = c.inspect_branch("r", "master").head.id
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"localpachd still running 60 s after {signal.Signals(signum).name}")
        assert code == 0
    finally:
        stop(proc)
    proc, port = serve(data_dir)
    try:
        c = client(port)
        info = c.inspect_repo("r")
        assert info.description == "kept"
        assert c.inspect_branch("r", "master").head.id == head
        assert next(iter(c.inspect_commit(("r", "master")))).finished.seconds > 0
        assert sorted(f.file.path for f in c.walk_file(("r", "master"), "/")) == [
            "/",
            "/a.txt",
            "/dir/",
            "/dir/b.txt",
        ]
        assert c.get_file(("r", "master"), "/a.txt").read() == b"alpha"
        assert c.get_file(("r", "master"), "/dir/b.txt").read() == b"beta"
        assert [ci.commit.id for ci in c.list_commit("r")] == [head]
    finally:
        stop(proc)
