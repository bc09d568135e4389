"""PFS throughput of localpachd vs `cp` on the same disk: one big file and many small files.

Run: `python -m bench.bench_pfs [--big-mib 256] [--small-count 10000] [--small-bytes 1024]`
(also collected by `python -m bench`). A real `python -m localpachd serve` child process on a
temp dir, the unmodified python-pachyderm client. Put = upload through ModifyFile (one commit);
get = download to a file on disk (GetFile for the big file, one GetFileTAR extracted to disk for
the small files). Baseline: `cp` (and `cp -r`) of the same bytes on the same disk. Also reports
the server's peak RSS to show uploads and downloads stream in bounded memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import check, client, local_server, show

MiB = 1024 * 1024


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _make_big(path: Path, mib: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)


def _make_small(root: Path, count: int, size: int) -> None:
    for i in range(count):
        d = root / f"d{i // 1000:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def _cp(src: Path, dst: Path, recursive: bool = False) -> None:
    subprocess.run(["cp", "-r" if recursive else "--", str(src), str(dst)], check=True)


def _bench_big(pc: Any, work: Path, mib: int) -> dict[str, float]:
    src = work / "big.bin"
    _make_big(src, mib)
    pc.create_repo("big")

    def put() -> None:
        with open(src, "rb") as f:
            pc.put_file_bytes(("big", "master"), "/big.bin", f)

    def get() -> None:
        with open(work / "big.out", "wb") as out:
            shutil.copyfileobj(pc.get_file(("big", "master"), "/big.bin"), out, MiB)

    put_s, get_s = _timed(put), _timed(get)
    cp_s = _timed(lambda: _cp(src, work / "big.cp"))
    assert (work / "big.out").stat().st_size == mib * MiB
    for p in ("big.out", "big.cp", "big.bin"):
        (work / p).unlink()
    return {"big_put_mib_s": mib / put_s, "big_get_mib_s": mib / get_s,
            "big_cp_mib_s": mib / cp_s}


def _bench_small(pc: Any, work: Path, count: int, size: int) -> dict[str, float]:
    src = work / "small"
    _make_small(src, count, size)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    pc.create_repo("small")

    def put() -> None:
        with pc.modify_file_client(("small", "master")) as mfc:
            for p in files:
                mfc.put_file_from_bytes("/" + p.relative_to(src).as_posix(), p.read_bytes())

    def get() -> None:
        out = work / "small.out"
        with pc.get_file_tar(("small", "master"), "/") as tar:
            tar.extractall(out, filter=tarfile.fully_trusted_filter)

    put_s, get_s = _timed(put), _timed(get)
    cp_s = _timed(lambda: _cp(src, work / "small.cp", recursive=True))
    got = sum(1 for p in (work / "small.out").rglob("*") if p.is_file())
    assert got == count, f"downloaded {got} of {count} files"
    total = count * size / MiB
    return {"small_put_files_s": count / put_s, "small_get_files_s": count / get_s,
            "small_cp_files_s": count / cp_s, "small_put_mib_s": total / put_s,
            "small_get_mib_s": total / get_s}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="bench_pfs", description=__doc__)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--small-count", type=int, default=10000)
    ap.add_argument("--small-bytes", type=int, default=1024)
    args = ap.parse_args(argv)
    with local_server() as server:
        pc = client(server)
        work = Path(tempfile.mkdtemp(prefix="bench-pfs-", dir=server.data_dir))
        figures: dict[str, Any] = {}
        figures.update(_bench_big(pc, work, args.big_mib))
        figures.update(_bench_small(pc, work, args.small_count, args.small_bytes))
        figures["server_peak_rss_mib"] = _peak_rss_mib(server.process.pid)
    figures = {k: round(v, 1) for k, v in figures.items()}
    figures["big_put_vs_cp"] = round(figures["big_put_mib_s"] / figures["big_cp_mib_s"], 3)
    figures["big_get_vs_cp"] = round(figures["big_get_mib_s"] / figures["big_cp_mib_s"], 3)
    figures["small_put_vs_cp"] = round(
        figures["small_put_files_s"] / figures["small_cp_files_s"], 3)
    figures["small_get_vs_cp"] = round(
        figures["small_get_files_s"] / figures["small_cp_files_s"], 3)
    # Memory is bounded by the message size, not the file size: the client sends 19 MiB
    # messages and gRPC + protobuf hold a few copies of each (measured ~190 MiB peak for 256 MiB
    # and ~300 MiB for 768 MiB before flow control was tightened).
    checks = [check("server peak RSS MiB (streams, bounded memory)",
                    figures["server_peak_rss_mib"], 320.0)]
    show(f"PFS throughput ({args.big_mib} MiB file; {args.small_count} x {args.small_bytes} B)",
         figures, checks)
    return {"name": "pfs", "figures": figures, "checks": checks}


if __name__ == "__main__":
    main()
