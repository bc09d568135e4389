"""Where one warm datum's CPU goes: the zygote's fork versus the forked child, per datum.

Not part of `make bench` (no target of issue 7 of its own); it backs the per-datum breakdown in
bench/README.md. Runs N iris `model` datums (`python3 -m stages.train`, one SVM each) through
`localpachd.runtime_warm.WarmRuntime` directly — no server — after one warm-up datum that
starts the zygote and preloads scikit-learn, and reads the zygote's /proc accounting: its own
CPU (receive, fork, reap) and its reaped children's CPU and minor page faults (copy-on-write).
`--noop` runs a module that only imports scikit-learn instead: the floor of fork-per-datum.

`python -m bench.warm_datum [-n 40] [--noop]`
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT

NOOP = "import sklearn.svm  # noqa: F401\n"


def _proc(pid: int) -> list[float]:
    """utime, stime, cutime, cstime (ms) and cminflt of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return [int(fields[i]) * 1000 / tick for i in (11, 12, 13, 14)] + [float(fields[8])]


def _prepare(work: Path) -> None:
    for d in ("raw", "split", "c", "gamma", "lib"):
        (work / d).mkdir()
    (work / "raw" / "iris.csv").write_bytes((ROOT / "data" / "iris.csv").read_bytes())
    subprocess.run([sys.executable, "-m", "stages.split", "--input", str(work / "raw"),
                    "--output", str(work / "split"), "--seed", "42"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    (work / "c" / "x").write_text("1.0\n")
    (work / "gamma" / "x").write_text("0.1\n")
    (work / "lib" / "pachsync_noop_datum.py").write_text(NOOP)


def measure(n: int, noop: bool) -> dict[str, float]:
    from localpachd.runtime import DatumRun
    from localpachd.runtime_warm import WarmRuntime

    work = Path(tempfile.mkdtemp(prefix="pachsync-warm-datum-"))
    _prepare(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work / "lib"), str(ROOT)])}
    if noop:
        args: tuple[str, ...] = ("-m", "pachsync_noop_datum")
    else:
        args = ("-m", "stages.train", "--train", str(work / "split" / "train.csv"),
                "--c", str(work / "c"), "--gamma", str(work / "gamma"), "--kernel", "rbf")
    warm = WarmRuntime()

    def run(i: int) -> None:
        cwd = work / f"d{i}"
        (cwd / "out").mkdir(parents=True)
        extra = () if noop else ("--output", str(cwd / "out"))
        outcome = warm.run(DatumRun(argv=(sys.executable, *args, *extra), env=env, cwd=cwd,
                                    stdin=None, stdout_path=cwd / "log", stderr_path=cwd / "log"))
        if outcome.returncode != 0:
            raise RuntimeError((cwd / "log").read_text())

    try:
        run(0)
        pid = next(iter(warm.pool.current.values())).proc.pid
        before, t0 = _proc(pid), time.perf_counter()
        for i in range(1, n + 1):
            run(i)
        wall, after = time.perf_counter() - t0, _proc(pid)
    finally:
        warm.close()
        shutil.rmtree(work, ignore_errors=True)
    d = [(b - a) / n for a, b in zip(before, after, strict=True)]
    return {"wall ms": 1000 * wall / n, "zygote user ms": d[0], "zygote sys ms": d[1],
            "child user ms": d[2], "child sys ms": d[3], "child minor faults": d[4]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.warm_datum", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=40, help="datums to time (after one warm-up)")
    p.add_argument("--noop", action="store_true", help="a datum that does nothing")
    args = p.parse_args(argv)
    figures = measure(args.n, args.noop)
    print(f"{'no-op' if args.noop else 'iris model'} warm datum, mean of {args.n}:")
    for k, v in figures.items():
        print(f"  {k:20} {v:8.2f}")


if __name__ == "__main__":
    main()
