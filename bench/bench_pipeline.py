"""Benchmarks (1), (1b) and (2): the iris pipeline on localpachd against a single process.

(1) From empty: start localpachd, create raw_data and parameters, create the four pipelines
    from specs/pipelines (model and test with `datum_batching: true`: one process per worker
    slot works through its datums), fill the two repos (the order of `pachsync demo` and of
    GitOps: specs first, data later), wait until the two data commits' jobs have finished
    (InspectJobSet with wait: no polling); versus
    `bench.baseline_iris` (one fresh process doing the same split, 77 fits, 77 evaluations
    and selection with the same stage code). Target (issue 15): ratio <= 1.3.
(1b) The same search with `datum_batching` removed from every spec (one process, or one fork of
    the warm zygote, per datum: the isolation floor). Target: ratio <= 2.7 (no regression).
    `--runs` rounds (3), each a (1) run, a (1b) run and a baseline run, after one baseline
    run; the ratios are of the medians, as this machine's speed drifts by up to 1.5x from one
    minute to the next.
(2) Incremental: add one C value to parameters on every (1) server; the median wall time as a
    fraction of (1)'s median (target <= 10 %) and the datums processed (must be exactly
    7 + 7 + 1 each time). Until 2026-12-06 only the first (1) server measured it: one sample of
    a 0.2-0.4 s figure on a machine whose speed drifts by up to 1.5x.

`python -m bench.bench_pipeline [--runtime auto|warm|subprocess] [--runs N] [--cold]`;
`--cold` also runs (1b) with the subprocess runtime, the "before" figure of issue 7 (slow: a
process per datum).

What is timed is localpachd's work only: the checkout is byte-compiled first (`compile_tree`:
an installed localpachd has its .pyc; the baseline's stage code gets them too), and the
benchmark's own client library is imported before the clock starts (until 2026-12-06 the first
(1) run of a process paid that import, ~0.1 s, and later runs did not).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

from bench.common import (
    ROOT,
    check,
    client,
    compile_tree,
    create_pipeline_from_spec,
    job_state,
    local_server,
    own_cpu_seconds,
    show,
    tree_cpu_seconds,
    wait_commit_sets,
)

PIPELINES = ["split", "model", "test", "select"]
NEW_C = b"1.000\n"  # not in data/parameters: a new model name


def baseline() -> dict[str, Any]:
    """Wall time of a fresh process doing the whole search (its imports included)."""
    with tempfile.TemporaryDirectory(prefix="pachsync-baseline-") as work:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "bench.baseline_iris", work], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": cpu}


def _create_repos(pc: Any) -> None:
    pc.create_repo("raw_data")
    pc.create_repo("parameters")


def _load(pc: Any) -> list[str]:
    """Fills raw_data and parameters, one commit each; returns the two commit (set) IDs."""
    with pc.commit("raw_data", "master") as raw:
        pc.put_file_bytes(raw, "/iris.csv", (ROOT / "data" / "iris.csv").read_bytes())
    with pc.commit("parameters", "master") as params:
        for kind in ("c", "gamma"):
            lines = (ROOT / "data" / "parameters" / f"{kind}_parameters.txt").read_bytes()
            for i, line in enumerate(lines.splitlines(keepends=True)):
                pc.put_file_bytes(params, f"/{kind}_parameters.txt/{i:016x}", line)
    return [raw.id, params.id]


def _specs(batching: bool) -> list[dict[str, Any]]:
    """The pipeline specs of specs/; with `batching` False, `datum_batching` removed (1b)."""
    specs = [yaml.safe_load((ROOT / "specs" / "pipelines" / f"{n}.yaml").read_text())
             for n in PIPELINES]
    if not batching:
        for spec in specs:
            spec["transform"].pop("datum_batching", None)
    return specs


def _counts(jobs: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {n: {"processed": int(j.data_processed), "skipped": int(j.data_skipped),
                "total": int(j.data_total), "failed": int(j.data_failed)} for n, j in jobs.items()}


def _job_marks(jobs: dict[str, Any], t0: float) -> dict[str, float]:
    """When each job started and finished, in seconds since t0 (server clock = ours)."""
    offset = time.time() - time.perf_counter()  # perf_counter t0 on the wall clock
    out = {}
    for name, job in jobs.items():
        for what in ("started", "finished"):
            ts = getattr(job, what)
            if ts.seconds:
                out[f"{name} {what}"] = round(ts.seconds + ts.nanos / 1e9 - offset - t0, 2)
    return out


def _require_full(jobs: dict[str, Any]) -> None:
    """A run that failed or processed fewer datums must not be timed as if it had worked."""
    counts = _counts(jobs)
    states = {n: job_state(j) for n, j in jobs.items()}
    if set(states) != set(PIPELINES) or set(states.values()) != {"JOB_SUCCESS"} or any(
            counts[n]["processed"] != 77 for n in ("model", "test")):
        raise RuntimeError(f"the search did not run fully: {states}, {counts}")


def full_run(runtime: str, incremental: bool, batching: bool = True) -> dict[str, Any]:
    """(1) (or (1b) without `batching`) and, on the same server, (2). Returns the figures."""
    import python_pachyderm  # noqa: F401 - the benchmark's client, not localpachd's work

    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    with local_server(runtime) as server:
        marks["server listening"] = time.perf_counter() - t0
        pc = client(server)
        _create_repos(pc)  # the GitOps order, as `pachsync demo`: pipelines, then data
        for spec in _specs(batching):
            create_pipeline_from_spec(pc, spec)
        marks["pipelines created"] = time.perf_counter() - t0
        commits = _load(pc)
        marks["data loaded"] = time.perf_counter() - t0
        jobs = wait_commit_sets(pc, commits)
        full = time.perf_counter() - t0
        _require_full(jobs)
        cpu = tree_cpu_seconds(server.process.pid)
        server_cpu = own_cpu_seconds(server.process.pid)
        result: dict[str, Any] = {"runtime": runtime, "batching": batching,
                                  "full_s": full, "cpu_s": cpu,
                                  "server_cpu_s": server_cpu,
                                  "full_jobs": _counts(jobs),
                                  "states": {n: job_state(j) for n, j in jobs.items()},
                                  "marks_s": {**marks, **_job_marks(jobs, t0)}}
        files = len(list(pc.list_file(("model", "master"), "/")))
        result["models_in_repo"] = files
        if incremental:
            result.update(_incremental(pc))
    return result


def _incremental(pc: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    with pc.commit("parameters", "master") as c:
        pc.put_file_bytes(c, f"/c_parameters.txt/{11:016x}", NEW_C)
    jobs = wait_commit_sets(pc, [c.id])
    return {"incremental_s": time.perf_counter() - t0, "incremental_jobs": _counts(jobs),
            "incremental_states": {n: job_state(j) for n, j in jobs.items()}}


def measure(runs: int, runtime: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                              list[dict[str, Any]]]:
    """`runs` rounds of a (1) run, a (1b) run and a baseline run, after a first baseline run
    (the machine's speed drifts by up to 1.5x between minutes here: interleaving and medians
    keep the ratios honest). Every (1) run also measures (2)."""
    bases = [baseline()]
    batched: list[dict[str, Any]] = []
    unbatched: list[dict[str, Any]] = []
    for _ in range(runs):
        batched.append(full_run(runtime, incremental=True, batching=True))
        unbatched.append(full_run(runtime, incremental=False, batching=False))
        bases.append(baseline())
    walls = [b["wall_s"] for b in bases]
    base = {**bases[-1], "wall_s": statistics.median(walls),
            "cpu_s": statistics.median(b["cpu_s"] for b in bases), "runs_s": walls}
    return base, batched, unbatched


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _side(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one side, (1) or (1b): wall times, CPU, the first run's timeline."""
    return {
        f"{label}: median (s)": round(_median(runs, "full_s"), 2),
        f"{label}: runs (s)": [round(r["full_s"], 2) for r in runs],
        f"{label}: job states": runs[0]["states"],
        f"{label}: CPU s (median), server+zygotes+datums": round(_median(runs, "cpu_s"), 2),
        f"{label}: CPU s (median), server process alone": round(_median(runs, "server_cpu_s"), 2),
        f"{label}: timeline of the first run (s)": {k: round(v, 2)
                                                    for k, v in runs[0]["marks_s"].items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.bench_pipeline", description=__doc__)
    p.add_argument("--runtime", default="auto", help="worker runtime under test (default auto)")
    p.add_argument("--runs", type=int, default=3, help="rounds of (1), (1b) and a baseline run, "
                   "after a first baseline run; medians are compared (default 3)")
    p.add_argument("--cold", action="store_true",
                   help="also time (1b) with the subprocess runtime")
    args = p.parse_args(argv)
    compile_tree()
    base, batched, unbatched = measure(max(1, args.runs), args.runtime)
    first = batched[0]
    full_s, unbatched_s = _median(batched, "full_s"), _median(unbatched, "full_s")
    incremental_s = _median(batched, "incremental_s")
    figures: dict[str, Any] = {
        f"baseline single process, median of {len(base['runs_s'])} (s)": round(base["wall_s"], 2),
        "baseline runs (s)": [round(x, 2) for x in base["runs_s"]],
        "baseline CPU s (median)": round(base["cpu_s"], 2),
        **_side(f"(1) batching, runtime {args.runtime}", batched),
        **_side(f"(1b) no batching, runtime {args.runtime}", unbatched),
        "models in the model repo": first["models_in_repo"],
        "incremental: add one C value, median (s)": round(incremental_s, 3),
        "incremental: runs (s)": [round(r["incremental_s"], 3) for r in batched],
        "incremental datums processed": {n: c["processed"]
                                         for n, c in first["incremental_jobs"].items()},
    }
    if args.cold:
        cold = full_run("subprocess", incremental=False, batching=False)
        figures["(1b) runtime subprocess (s)"] = round(cold["full_s"], 2)
        figures["(1b) runtime subprocess / baseline"] = round(cold["full_s"] / base["wall_s"], 2)
    processed = all([r["incremental_jobs"][n]["processed"] for n in PIPELINES[1:]] == [7, 7, 1]
                    for r in batched)  # fmt: skip
    checks = [
        check("(2) incremental datums == 7+7+1 (1 = yes)",
              float(processed), 1.0, higher_is_better=True),
        check("(2) incremental / full (1) (medians)", incremental_s / full_s, 0.10),
        check("(1b) no batching / single process (medians)", unbatched_s / base["wall_s"], 2.7),
        check("(1) batching / single process (medians)", full_s / base["wall_s"], 1.3),
    ]
    show("(1)+(1b)+(2) iris pipeline on localpachd vs one process", figures, checks)
    return {"name": "pipeline", "figures": figures, "checks": checks,
            "raw": {"baseline": base, "runs": batched, "runs_unbatched": unbatched}}


if __name__ == "__main__":
    main()
