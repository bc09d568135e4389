"""Benchmark (4) of issue 7: localpachd's datum throughput on trivial shell datums.

1,000 one-line files in an input repo, a pipeline whose transform is plain shell
(`cp /pfs/inputs/* /pfs/out/`, glob `/*`: one datum per file). The time runs from
CreatePipeline until the job is finished and its output commit holds the 1,000 files, so it
measures the job engine and the worker (datum planning, scratch layout, process start, output
collection, commit) rather than any computation. Target: >= 150 datums/s.

`python -m bench.bench_datums [--datums N] [--runtime auto|warm|subprocess]
[--pfs-mode auto|namespace|rewrite] [--interleave N]`: `--interleave 3` runs namespace mode and
rewrite mode alternately, 3 times each, and compares their medians (the machine's speed drifts
from one minute to the next, so the two modes are measured in the same minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from bench.common import (
    check,
    client,
    create_pipeline_from_spec,
    job_state,
    local_server,
    own_cpu_seconds,
    show,
    tree_cpu_seconds,
    wait_jobs,
)


def spec(parallelism: int | None) -> dict[str, Any]:
    s: dict[str, Any] = {
        "pipeline": {"name": "copy"},
        "transform": {"cmd": ["sh"], "stdin": ["cp /pfs/inputs/* /pfs/out/"]},
        "input": {"pfs": {"repo": "inputs", "glob": "/*"}},
    }
    if parallelism:
        s["parallelism_spec"] = {"constant": parallelism}
    return s


def _seconds(ts: Any) -> float:
    return float(ts.seconds) + ts.nanos / 1e9


def measure(datums: int, runtime: str, parallelism: int | None) -> dict[str, Any]:
    with local_server(runtime) as server:
        pc = client(server)
        pc.create_repo("inputs")
        pid = server.process.pid
        with pc.commit("inputs", "master") as c, pc.modify_file_client(c) as mfc:
            for i in range(datums):
                mfc.put_file_from_bytes(f"/f{i:05d}.txt", f"datum {i}\n".encode())
        own0, tree0 = own_cpu_seconds(pid), tree_cpu_seconds(pid)
        t0 = time.perf_counter()
        create_pipeline_from_spec(pc, spec(parallelism))
        jobs = wait_jobs(pc, ["copy"], poll=0.1,
                         expect=lambda j: int(j["copy"].data_processed) == datums)
        wall = time.perf_counter() - t0
        own, tree = own_cpu_seconds(pid) - own0, tree_cpu_seconds(pid) - tree0
        job = jobs["copy"]
        outputs = sum(1 for _ in pc.list_file(("copy", "master"), "/"))
        inside = None
        if job.started.seconds and job.finished.seconds:
            inside = _seconds(job.finished) - _seconds(job.started)
    return {"wall_s": wall, "job_s": inside, "state": job_state(job), "outputs": outputs,
            "processed": int(job.data_processed), "server_cpu_s": own,
            "datum_cpu_s": tree - own}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.bench_datums", description=__doc__)
    p.add_argument("--datums", type=int, default=1000)
    p.add_argument("--runtime", default="auto")
    p.add_argument("--parallelism", type=int, default=None,
                   help="parallelism_spec.constant (default: the server's cap, the cores)")
    p.add_argument("--pfs-mode", choices=("auto", "namespace", "rewrite"), default=None,
                   help="how datums see /pfs (localpachd serve --pfs-mode; default auto)")
    p.add_argument("--interleave", type=int, default=0, metavar="N",
                   help="N runs in namespace mode and N in rewrite mode, alternating; medians")
    args = p.parse_args(argv)
    if args.interleave:
        return interleaved(args.interleave, args.datums, args.runtime, args.parallelism)
    from localpachd import runtime_pfsmount as pfsmount

    if args.pfs_mode:
        os.environ[pfsmount.MODE_ENV] = args.pfs_mode
        pfsmount.forget_mode()
    r = measure(args.datums, args.runtime, args.parallelism)
    rate = r["processed"] / r["wall_s"]
    figures = {
        "datums": args.datums,
        "/pfs mode": pfsmount.mode(),
        "job state": r["state"],
        "output files": r["outputs"],
        "create -> job finished (s)": round(r["wall_s"], 2),
        "job started -> finished (s)": round(r["job_s"], 2) if r["job_s"] else "n/a",
        "CPU ms per datum: server / datum processes": [
            round(1000 * r["server_cpu_s"] / args.datums, 2),
            round(1000 * r["datum_cpu_s"] / args.datums, 2)],
    }
    checks = [check("(4) datums/s", rate, 150.0, higher_is_better=True)]
    show(f"(4) datum throughput, {args.datums} `cp` shell datums", figures, checks)
    return {"name": "datums", "figures": figures, "checks": checks, "raw": r}


def _in_mode(mode: str, datums: int, runtime: str, parallelism: int | None
             ) -> tuple[str, float, dict[str, Any]]:  # fmt: skip
    """One run with the server in `mode`: (the mode it ran in, datums/s, raw figures)."""
    from localpachd import runtime_pfsmount as pfsmount

    os.environ[pfsmount.MODE_ENV] = mode
    pfsmount.forget_mode()
    r = measure(datums, runtime, parallelism)
    return pfsmount.mode(), r["processed"] / r["wall_s"], r


def interleaved(rounds: int, datums: int, runtime: str, parallelism: int | None
                ) -> dict[str, Any]:  # fmt: skip
    """Namespace and rewrite mode alternately, `rounds` runs each: each mode's median."""
    runs: dict[str, list[tuple[str, float, dict[str, Any]]]] = {"namespace": [], "rewrite": []}
    for _ in range(rounds):
        for mode, got in runs.items():
            got.append(_in_mode(mode, datums, runtime, parallelism))
    figures: dict[str, Any] = {"datums": datums}
    medians = {}
    for mode, got in runs.items():
        medians[mode] = statistics.median(rate for _, rate, _ in got)
        cpu = [(r["server_cpu_s"] + r["datum_cpu_s"]) * 1000 / datums for _, _, r in got]
        figures[f"{mode}: modes run in"] = sorted({ran for ran, _, _ in got})
        figures[f"{mode}: datums/s per run"] = [round(rate, 1) for _, rate, _ in got]
        figures[f"{mode}: CPU ms per datum, server + datums (median)"] = round(
            statistics.median(cpu), 2)
    figures["namespace / rewrite (medians)"] = round(medians["namespace"] / medians["rewrite"], 2)
    checks = [check("(4) datums/s, namespace mode (median)", medians["namespace"], 150.0,
                    higher_is_better=True),
              check("(4) datums/s, rewrite mode (median)", medians["rewrite"], 150.0,
                    higher_is_better=True)]  # fmt: skip
    show(f"(4) datum throughput, {datums} `cp` shell datums, /pfs modes interleaved x{rounds}",
         figures, checks)  # fmt: skip
    return {"name": "datums", "figures": figures, "checks": checks,
            "raw": {m: [r for _, _, r in got] for m, got in runs.items()}}


if __name__ == "__main__":
    main()
