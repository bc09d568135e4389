"""Benchmark (3) of issue 7: the agent's no-op sync and its planner's growth.

- No-op sync against 200 managed pipelines: a GitOps repo (a bare git remote) declaring 200
  pipelines is applied once to a fresh localpachd, then `agent.sync.sync_once` runs again
  with nothing to do. Reports its wall time (median of 5) and `SyncResult.rpc_count`.
  Targets: <= 3 RPCs and <= 0.5 s.
- Plan time for 10, 100 and 1,000 pipelines: the pure `agent.plan.plan` on a desired state and
  the live state the server would hold after applying it (median of 5). It should grow
  linearly: t(1000)/t(100) near 10.

`python -m bench.bench_agent [--pipelines 200]`
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Skip, check, local_server, show

SOURCE = "bench:specs"


def _pipeline_yaml(i: int) -> str:
    return (f"pipeline:\n  name: p{i:04d}\ntransform:\n  image: busybox:1.36.0\n"
            f"  cmd: [sh, -c, \"cp -r /pfs/raw/* /pfs/out/ || true\"]\n"
            f"  env:\n    IDX: \"{i}\"\ninput:\n  pfs:\n    repo: raw\n    glob: /*\n"
            f"parallelism_spec:\n  constant: 1\n")


def _gitops_remote(root: Path, n: int) -> Path:
    work = root / "work"
    (work / "specs" / "pipelines").mkdir(parents=True)
    (work / "specs" / "repos.yaml").write_text("repos:\n  - name: raw\n")
    for i in range(n):
        (work / "specs" / "pipelines" / f"p{i:04d}.yaml").write_text(_pipeline_yaml(i))
    remote = root / "remote.git"
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "specs"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(remote), "HEAD:main"], check=True)
    return remote


def noop_sync(n: int) -> dict[str, Any]:
    try:
        from agent.sync import SyncOptions, sync_once
    except ImportError as e:
        raise Skip(f"agent.sync (contract C4) is not available: {e}") from e
    with tempfile.TemporaryDirectory(prefix="pachsync-bench-agent-") as tmp, \
            local_server("subprocess") as server:
        remote = _gitops_remote(Path(tmp), n)
        opts = SyncOptions(source=str(remote), pachd=server.address,
                           cache_dir=Path(tmp) / "cache", source_id=SOURCE)
        t0 = time.perf_counter()
        first = sync_once(opts)
        apply_s = time.perf_counter() - t0
        if first.result != "applied":
            raise RuntimeError(f"the first sync did not apply: {first.result} {first.errors[:3]}")
        runs = [sync_once(opts) for _ in range(5)]
    return {"apply_s": apply_s, "first_rpcs": first.rpc_count,
            "results": sorted({r.result for r in runs}),
            "noop_s": statistics.median(r.duration_s for r in runs),
            "noop_rpcs": max(r.rpc_count for r in runs),
            "changed": sum(1 for r in runs for a in r.actions.values() if a != "unchanged")}


def plan_times(sizes: tuple[int, ...] = (10, 100, 1000)) -> dict[int, float]:
    from agent.cluster.model import LivePipeline, LiveRepo, LiveState
    from agent.plan import Policy, plan
    from agent.plan.normalize import (
        ANN_MANAGED_BY,
        ANN_SOURCE_COMMIT,
        ANN_SPEC_HASH,
        normalize_spec,
        spec_hash,
    )
    from agent.specs import DesiredState, PipelineSpec, RepoSpec

    out: dict[int, float] = {}
    for n in sizes:
        specs, lives = [], []
        for i in range(n):
            up = "raw" if i == 0 else f"p{i - 1:04d}"
            doc = {"pipeline": {"name": f"p{i:04d}"},
                   "transform": {"image": "busybox:1.36.0", "cmd": ["sh", "-c", "true"],
                                 "env": {"IDX": str(i)}},
                   "input": {"pfs": {"repo": up, "glob": "/*"}}}
            specs.append(PipelineSpec(f"p{i:04d}", f"specs/pipelines/p{i:04d}.yaml", doc, (up,)))
            live = copy.deepcopy(doc)
            live["metadata"] = {"annotations": {
                ANN_MANAGED_BY: SOURCE, ANN_SOURCE_COMMIT: "a" * 40,
                ANN_SPEC_HASH: spec_hash(normalize_spec(doc))}}
            lives.append(LivePipeline(f"p{i:04d}", "default", live))
        desired = DesiredState(repos=(RepoSpec("raw"),), pipelines=tuple(specs))
        state = LiveState(repos=(LiveRepo("raw"),), pipelines=tuple(lives))
        policy = Policy(source_id=SOURCE, commit="a" * 40)
        times = []
        for _ in range(5):
            gc.collect()
            gc.disable()  # as timeit does: a collection of the whole heap is not the planner's
            try:
                t0 = time.perf_counter()
                result = plan(desired, state, policy)
                times.append(time.perf_counter() - t0)
            finally:
                gc.enable()
        if result.has_changes:
            raise RuntimeError(f"plan of {n} identical pipelines is not a no-op")
        out[n] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.bench_agent", description=__doc__)
    p.add_argument("--pipelines", type=int, default=200)
    args = p.parse_args(argv)
    figures: dict[str, Any] = {}
    checks = []
    plans = plan_times()
    for n, t in plans.items():
        figures[f"plan time, {n} pipelines (ms)"] = round(t * 1000, 2)
    figures["plan growth t(1000)/t(100) (linear = 10)"] = round(plans[1000] / plans[100], 1)
    try:
        noop = noop_sync(args.pipelines)
    except Skip as e:
        figures["no-op sync"] = f"skipped: {e}"
    else:
        figures[f"first sync applying {args.pipelines} pipelines (s)"] = round(noop["apply_s"], 2)
        figures["no-op sync results"] = noop["results"]
        checks.append(check(f"(3) no-op sync RPCs, {args.pipelines} pipelines",
                            noop["noop_rpcs"], 3))
        checks.append(check(f"(3) no-op sync wall time, {args.pipelines} pipelines (s)",
                            noop["noop_s"], 0.5))
    checks.append(check("(3) plan growth t(1000)/t(100)", plans[1000] / plans[100], 15.0))
    show("(3) agent: no-op sync and plan growth", figures, checks)
    return {"name": "agent", "figures": figures, "checks": checks}


if __name__ == "__main__":
    main()
