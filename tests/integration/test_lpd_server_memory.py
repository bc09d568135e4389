"""Large files stream through localpachd in chunks with bounded memory (issue 3): a 1 GiB file
is put and read back through the unmodified python-pachyderm client against a real
`python -m localpachd serve` subprocess, and the server's peak resident memory (VmHWM) must stay
far below the file size. The test process never holds the file either: it sends from a reader
that makes 1 MiB chunks on demand and checks the download with a running hash."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from helpers.pachd import client, serve, stop

MIB = 1024 * 1024
FILE_SIZE = 1024 * MIB
PEAK_RSS_LIMIT = 400 * MIB
FREE_DISK_NEEDED = 5 * 1024 * MIB


class _ChunkReader:
    """A read-only file object of `size` bytes made 1 MiB at a time (a fixed random block
    stamped with its index, so no two chunks are equal); it hashes what it hands out."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.index = 0
        self.block = os.urandom(MIB)
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0 or n == 0:
            return b""
        # a short read, as raw files may return; the client keeps reading until b""
        chunk = (self.index.to_bytes(8, "big") + self.block[8:])[: min(MIB, self.left)]
        self.index += 1
        self.left -= len(chunk)
        self.sha.update(chunk)
        return chunk


def _peak_rss(pid: int) -> int:
    """The process's high-water resident set size in bytes (VmHWM of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.mark.slow
def test_1gib_put_and_get_stream_with_bounded_server_memory(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < FREE_DISK_NEEDED:
        pytest.skip(f"needs 5 GiB free under {tmp_path} for a 1 GiB upload, has {free // MIB} MiB")
    proc, port = serve(tmp_path / "pachd")
    try:
        c = client(port)
        c.create_repo("big")
        reader = _ChunkReader(FILE_SIZE)
        with c.commit("big", "master") as commit:
            c.put_file_bytes(commit, "/big.bin", reader)
        assert reader.left == 0 and reader.index == FILE_SIZE // MIB
        assert c.inspect_file(("big", "master"), "/big.bin").size_bytes == FILE_SIZE

        got, sha = 0, hashlib.sha256()
        with c.get_file(("big", "master"), "/big.bin") as f:
            while chunk := f.read(4 * MIB):
                got += len(chunk)
                sha.update(chunk)
        assert got == FILE_SIZE
        assert sha.hexdigest() == reader.sha.hexdigest()

        peak = _peak_rss(proc.pid)
        assert peak < PEAK_RSS_LIMIT, f"server peak RSS {peak // MIB} MiB for a 1 GiB file"
    finally:
        stop(proc)
        shutil.rmtree(tmp_path / "pachd", ignore_errors=True)  # pytest keeps tmp dirs of 3 runs
