"""Before/after for benchmarks (1) and (2): full pipeline runs of two checkouts, alternating.

Not part of `make bench`. This machine's speed drifts by up to 1.5x between minutes, so two
figures taken at different times cannot be compared; this runs `bench.bench_pipeline.full_run`
(with (2), the added C value, on the same server) in the OTHER checkout (e.g.
`git worktree add /tmp/old <commit>`) and in this one, one after the other, with a baseline run
before each pair, and prints the medians and the paired differences. Each side runs with its
own code and its own `full_run` (the same venv: to compare localpachd alone, copy this
checkout's bench/ into the other, so both sides time the same way); both are byte-compiled first
(`bench.common.compile_tree`), or the side whose `.pyc` are stale or missing would pay for
compiling its sources in every process.

`python -m bench.paired OTHER_CHECKOUT [--pairs 4]`
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT, compile_tree

FULL = ("import json; from bench.bench_pipeline import full_run; r = full_run('auto', True); "
        "print(json.dumps({k: r[k] for k in ('full_s', 'cpu_s', 'server_cpu_s', "
        "'incremental_s')}))")
BASE = ("import json; from bench.bench_pipeline import baseline; r = baseline(); "
        "print(json.dumps({'full_s': r['wall_s'], 'cpu_s': r['cpu_s'], 'server_cpu_s': 0, "
        "'incremental_s': 0}))")


def _run(tree: Path, code: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # that checkout's packages, not the venv's
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("other", type=Path, help="the other checkout (the 'before')")
    p.add_argument("--pairs", type=int, default=4, help="alternating pairs (default 4)")
    args = p.parse_args(argv)
    for tree in (args.other.resolve(), ROOT):
        compile_tree(tree)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": [], "baseline": []}
    for _ in range(args.pairs):
        runs["baseline"].append(_run(ROOT, BASE))
        runs["before"].append(_run(args.other.resolve(), FULL))
        runs["after"].append(_run(ROOT, FULL))
    base = statistics.median(r["full_s"] for r in runs["baseline"])
    for name, rs in runs.items():
        walls = [round(r["full_s"], 2) for r in rs]
        print(f"{name:9} wall {walls} median {statistics.median(walls):.2f} s, CPU median "
              f"{statistics.median(r['cpu_s'] for r in rs):.2f} s, ratio "
              f"{statistics.median(walls) / base:.2f}")
    for name in ("before", "after"):
        inc = [r["incremental_s"] for r in runs[name]]
        shares = [r["incremental_s"] / r["full_s"] for r in runs[name]]
        print(f"{name:9} (2) add one C value {[round(x, 3) for x in inc]} median "
              f"{statistics.median(inc):.3f} s = {statistics.median(shares):.1%} of its (1)")
    for key in ("full_s", "incremental_s"):
        diffs = [a[key] - b[key] for a, b in zip(runs["after"], runs["before"], strict=True)]
        print(f"after - before, {key}, pair by pair: {[round(d, 3) for d in diffs]}, median "
              f"{statistics.median(diffs):+.3f} s")
    return runs


if __name__ == "__main__":
    main()
