r"""Stage `select`: ranks every model by its test accuracy and keeps the best ones.

Run by the `select` pipeline (specs/pipelines/select.yaml), one datum over all metrics and models:

    python3 -m stages.select --metrics /pfs/test --models /pfs/model --output /pfs/out \
        [--tolerance T | --threshold E]

--metrics    directory searched recursively for <model>_metric.txt files (from stages.evaluate)
--models     directory searched recursively for <model>.pkl files (from stages.train)
--output     receives a copy of each selected model, leaderboard.csv (model, C, gamma, accuracy,
             selected; best first) and selected.json (the rule, the best accuracy, the names)
--tolerance  keep every model whose accuracy is within T of the best (default 0: exactly the
             best ones, as the original example did); default from env SELECT_TOLERANCE
--threshold  instead keep every model whose error (1 - accuracy) is at most E; default from env
             SELECT_THRESHOLD (empty or unset: not used)

Exit 1 with one line on stderr (file and problem) when there are no metrics, a metric is not a
number in [0, 1], a metric has no model, or the rule selects nothing; nothing is written then.
scikit-learn and joblib are imported at module level on purpose (through `stages.evaluate`, whose
`load_model` checks every selected model): a warm worker runtime imports this module once and
then calls `main(argv)` per datum.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stages.common import StageError, read_text, run, write_atomic
from stages.evaluate import load_model

METRIC_SUFFIX = "_metric.txt"
NAME = re.compile(r"^model_C(?P<c>[^_]+)_G(?P<gamma>.+)$")
EPSILON = 1e-12  # accuracies are ratios of small integers; absorb float noise in comparisons


@dataclass(frozen=True)
class Entry:
    name: str  # model file name without .pkl
    accuracy: float
    model: Path

    @property
    def params(self) -> tuple[str, str]:
        match = NAME.match(self.name)
        return (match["c"], match["gamma"]) if match else ("", "")


def _env_float(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise StageError(f"env {name}", f"not a number: {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m stages.select",
        description="Keep the best models by test accuracy; write leaderboard.csv, selected.json.",
    )
    parser.add_argument("--metrics", required=True, type=Path, help="directory of *_metric.txt")
    parser.add_argument("--models", required=True, type=Path, help="directory of *.pkl models")
    parser.add_argument("--output", required=True, type=Path, help="output directory")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="keep models within this accuracy of the best (env SELECT_TOLERANCE, default 0)",
    )
    rule.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="keep models with error 1-accuracy <= this (env SELECT_THRESHOLD)",
    )
    return parser


def read_entries(metrics_dir: Path, models_dir: Path) -> list[Entry]:
    if not metrics_dir.is_dir():
        raise StageError(metrics_dir, "metrics directory not found")
    metric_files = sorted(p for p in metrics_dir.rglob(f"*{METRIC_SUFFIX}") if p.is_file())
    if not metric_files:
        raise StageError(metrics_dir, f"no metrics (*{METRIC_SUFFIX}) found")
    models = {p.stem: p for p in sorted(models_dir.rglob("*.pkl"))} if models_dir.is_dir() else {}
    if not models:
        raise StageError(models_dir, "no models (*.pkl) found")
    entries = []
    for path in metric_files:
        name = path.name[: -len(METRIC_SUFFIX)]
        text = read_text(path).strip()
        try:
            value = float(text)
        except ValueError:
            raise StageError(path, f"accuracy is not a number: {text[:40]!r}") from None
        if not 0.0 <= value <= 1.0:
            raise StageError(path, f"accuracy must be between 0 and 1, got {text!r}")
        if name not in models:
            raise StageError(path, f"no model {name}.pkl under {models_dir}")
        entries.append(Entry(name, value, models[name]))
    for name in sorted(set(models) - {e.name for e in entries}):
        print(f"stages.select: warning: {models[name]}: no metric, left out", file=sys.stderr)
    return sorted(entries, key=_rank)


def _rank(entry: Entry) -> tuple[float, float, float, str]:
    """Best accuracy first; ties by C, then gamma, numerically (the simplest models first)."""
    try:
        c, gamma = (float(v) for v in entry.params)
    except ValueError:
        c = gamma = float("inf")
    return (-entry.accuracy, c, gamma, entry.name)


def choose(
    entries: list[Entry], tolerance: float | None, threshold: float | None
) -> tuple[dict[str, object], list[Entry]]:
    """(rule description, selected entries). Entries come sorted best first."""
    best = entries[0].accuracy
    if threshold is not None:
        rule: dict[str, object] = {"kind": "threshold", "max_error": threshold}
        chosen = [e for e in entries if 1.0 - e.accuracy <= threshold + EPSILON]
    else:
        tol = tolerance or 0.0
        rule = {"kind": "tolerance", "tolerance": tol}
        chosen = [e for e in entries if e.accuracy >= best - tol - EPSILON]
    return rule, chosen


def leaderboard(entries: list[Entry], chosen: list[Entry]) -> bytes:
    names = {e.name for e in chosen}
    lines = ["model,C,gamma,accuracy,selected"]
    for e in entries:
        c, gamma = e.params
        lines.append(f"{e.name},{c},{gamma},{e.accuracy},{str(e.name in names).lower()}")
    return ("\n".join(lines) + "\n").encode()


def _body(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    tolerance, threshold = args.tolerance, args.threshold
    if tolerance is None and threshold is None:
        threshold = _env_float("SELECT_THRESHOLD")
        tolerance = None if threshold is not None else _env_float("SELECT_TOLERANCE")
    if (tolerance is not None and tolerance < 0) or (threshold is not None and threshold < 0):
        raise StageError("--tolerance/--threshold", "must not be negative")
    entries = read_entries(args.metrics, args.models)
    rule, chosen = choose(entries, tolerance, threshold)
    if not chosen:
        raise StageError(
            args.metrics, f"no model meets the rule {rule} (best accuracy {entries[0].accuracy})"
        )
    outputs = {args.output / "leaderboard.csv": leaderboard(entries, chosen)}
    for entry in chosen:
        load_model(entry.model)  # a check: a selected file must really be a model
        outputs[args.output / entry.model.name] = entry.model.read_bytes()
    summary = {
        "rule": rule,
        "best_accuracy": entries[0].accuracy,
        "considered": len(entries),
        "selected": [e.name for e in chosen],
    }
    outputs[args.output / "selected.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    write_atomic(outputs)
    print(
        f"stages.select: kept {len(chosen)} of {len(entries)} models "
        f"(best accuracy {entries[0].accuracy}, rule {rule})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run("stages.select", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
