"""`make bench` = `python -m bench`: run every benchmark, print a summary table, save the results.

Runs (1)+(1b)+(2) bench_pipeline (the search with and without datum batching), (3) bench_agent,
(4) bench_datums and (5) bench_pfs (written by the localpachd part-1 helper; its `main()` is
called when the module exists). A benchmark whose pieces have not landed is reported as
skipped; one that fails is reported with its error and the others still run. Results go to
bench/results/latest.json (gitignored) with the machine they ran on. `--only pipeline,datums`
runs a subset; `--cold` adds the subprocess-runtime "before" figure to (1b) (slow: one process
per datum re-imports scikit-learn).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import Skip

BENCHES = {"pipeline": "bench.bench_pipeline", "agent": "bench.bench_agent",
           "datums": "bench.bench_datums", "pfs": "bench.bench_pfs"}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "cpu": model or platform.processor(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_1m_at_start": load}


def run_one(name: str, module_name: str, argv: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        return {"name": name, "skipped": f"{module_name} has not landed yet"}
    try:
        result = module.main(argv)
    except Skip as e:
        result = {"name": name, "skipped": str(e)}
    except Exception as e:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc()
        result = {"name": name, "error": f"{type(e).__name__}: {e}"}
    if not isinstance(result, dict):
        result = {"name": name, "figures": {"result": result}}
    result.setdefault("name", name)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = [("benchmark", "measure", "value", "target", "")]
    for r in results:
        if "skipped" in r or "error" in r:
            rows.append((r["name"], "skipped" if "skipped" in r else "ERROR",
                         r.get("skipped") or r.get("error", ""), "", ""))
            continue
        for c in r.get("checks", []):
            rows.append((r["name"], c["what"], str(c["value"]), f"{c['op']} {c['target']}",
                         "ok" if c["ok"] else "MISSED"))
        if not r.get("checks"):
            for k, v in r.get("figures", {}).items():
                rows.append((r["name"], str(k), str(v), "", ""))
    widths = [min(max(len(row[i]) for row in rows), 60) for i in range(5)]
    lines = ["  ".join(cell[:60].ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    p.add_argument("--cold", action="store_true",
                   help="also run (1b) with the subprocess runtime (the 'before' figure)")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHES)
    started = time.perf_counter()
    info = {"machine": machine(), "date": datetime.datetime.now(datetime.UTC).isoformat(),
            "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])}
    results = []
    for name in names:
        extra = ["--cold"] if name == "pipeline" and args.cold else []
        results.append(run_one(name, BENCHES[name], extra))
    info["total_seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**info, "results": results}, indent=2, default=str) + "\n")
    m = info["machine"]
    print(f"\n== summary ({m['cpu']}, {m['cores']} cores, Python {m['python']}, "
          f"load {m['load_average_1m_at_start']:.1f} at start; {info['total_seconds']}s)")
    print(table(results))
    print(f"\nresults: {RESULTS}")
    missed = any(not c["ok"] for r in results for c in r.get("checks", []))
    return 1 if missed or any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
