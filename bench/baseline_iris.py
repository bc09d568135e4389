"""The single-process baseline of benchmark (1): the iris search without any server.

Run by `bench.bench_pipeline` as a fresh process (`python -m bench.baseline_iris WORKDIR`), so
its own imports count, exactly like a user's notebook would pay them. It does the same work
as the four pipelines, with the same stage code and arguments: the split, the 77 fits, the 77
evaluations and the selection. Prints the elapsed seconds since interpreter start as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

_T0 = time.perf_counter()

DATA = Path(__file__).resolve().parents[1] / "data"


def main(workdir: Path) -> dict[str, float | int]:
    from stages import evaluate, select, split, train

    out = {name: workdir / name for name in ("split", "model", "test", "select")}
    for d in out.values():
        d.mkdir(parents=True, exist_ok=True)
    split.main(["--input", str(DATA / "iris.csv"), "--output", str(out["split"]),
                "--test-fraction", "0.2", "--seed", "42"])
    params = workdir / "params"
    pairs = []
    for kind in ("c", "gamma"):
        lines = (DATA / "parameters" / f"{kind}_parameters.txt").read_bytes().splitlines(True)
        for i, line in enumerate(lines):
            f = params / kind / f"{i:016x}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(line)
    cs, gammas = sorted((params / "c").iterdir()), sorted((params / "gamma").iterdir())
    pairs = [(c, g) for c in cs for g in gammas]
    for c, g in pairs:
        train.main(["--train", str(out["split"] / "train.csv"), "--c", str(c), "--gamma", str(g),
                    "--output", str(out["model"]), "--kernel", "rbf"])
    for model in sorted(out["model"].glob("*.pkl")):
        evaluate.main(["--models", str(model), "--test", str(out["split"] / "test.csv"),
                       "--train", str(out["split"] / "train.csv"), "--output", str(out["test"])])
    select.main(["--metrics", str(out["test"]), "--models", str(out["model"]),
                 "--output", str(out["select"])])
    return {"models": len(list(out["model"].glob("*.pkl"))),
            "metrics": len(list(out["test"].glob("*_metric.txt")))}


if __name__ == "__main__":
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        counts = main(Path(sys.argv[1]))
    print(json.dumps({**counts, "seconds": time.perf_counter() - _T0}))
