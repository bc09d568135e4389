r"""Stage `select`: ranks models by test accuracy, then cross-validated accuracy; keeps the best.

Run by the `select` pipeline (specs/pipelines/select.yaml), one datum over all metrics and models:

    python3 -m stages.select --metrics /pfs/test --models /pfs/model --output /pfs/out \
        [--tolerance T | --threshold E] [--tie-break cv|none]

--metrics    directory searched recursively for <model>_metric.txt files (from stages.evaluate)
             and, beside them, <model>_cv.txt (cross-validated accuracy on the training split)
--models     directory searched recursively for <model>.pkl files (from stages.train)
--output     receives a copy of each selected model, leaderboard.csv (model, C, gamma, accuracy,
             cv_accuracy, selected; best first) and selected.json (the rule, the best accuracy,
             the models tied on accuracy, the names kept)
--tolerance  models whose test accuracy is within T of the best are tied (default 0: exactly the
             best accuracy, as the original example did); default from env SELECT_TOLERANCE
--tie-break  cv (default): of the tied models keep those with the best cross-validated accuracy
             (all of them when several share it); none: keep every tied model, which with
             tolerance 0 is the original example's rule exactly; default from env SELECT_TIE_BREAK
--threshold  instead keep every model whose error (1 - accuracy) is at most E, ties not broken
             (a quality bar, not a "best"); default from env SELECT_THRESHOLD (empty or unset: not
             used)

Ranking (leaderboard order, first = best): test accuracy, then cross-validated accuracy (a model
without a _cv.txt ranks after those with one), then C and gamma ascending (the simplest model).

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
CV_SUFFIX = "_cv.txt"
EPSILON = 1e-12  # accuracies are ratios of small integers; absorb float noise in comparisons
TIE_BREAKS = ("cv", "none")


@dataclass(frozen=True)
class Entry:
    name: str  # model file name without .pkl
    accuracy: float
    model: Path
    cv: float | None = None  # cross-validated accuracy on the training split, when written

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
    parser.add_argument(
        "--tie-break",
        choices=TIE_BREAKS,
        default=None,
        help="of the models tied on accuracy keep those with the best cross-validated accuracy "
        "(cv, the default) or all of them (none: the original rule); env SELECT_TIE_BREAK",
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
        entries.append(Entry(name, value, models[name], _read_cv(path.with_name(name + CV_SUFFIX))))
    for name in sorted(set(models) - {e.name for e in entries}):
        print(f"stages.select: warning: {models[name]}: no metric, left out", file=sys.stderr)
    return sorted(entries, key=_rank)


def _read_cv(path: Path) -> float | None:
    """The cross-validated accuracy in `path`; None when the file is absent (an older `test`)."""
    if not path.is_file():
        return None
    text = read_text(path).strip()
    try:
        value = float(text)
    except ValueError:
        raise StageError(path, f"cross-validated accuracy is not a number: {text[:40]!r}") from None
    if not 0.0 <= value <= 1.0:
        raise StageError(path, f"cross-validated accuracy must be between 0 and 1, got {text!r}")
    return value


def _rank(entry: Entry) -> tuple[float, float, float, float, str]:
    """Best accuracy first, then best cross-validated accuracy (unknown last); remaining ties by
    C, then gamma, numerically (the simplest models first)."""
    try:
        c, gamma = (float(v) for v in entry.params)
    except ValueError:
        c = gamma = float("inf")
    cv = -entry.cv if entry.cv is not None else float("inf")
    return (-entry.accuracy, cv, c, gamma, entry.name)


def tied(entries: list[Entry], tolerance: float) -> list[Entry]:
    """The models whose accuracy is within `tolerance` of the best (the original rule at 0)."""
    best = max(e.accuracy for e in entries)
    return [e for e in entries if e.accuracy >= best - tolerance - EPSILON]


def break_ties(candidates: list[Entry]) -> list[Entry]:
    """The candidates with the best cross-validated accuracy (all of them if none has one)."""
    scores = [e.cv for e in candidates if e.cv is not None]
    if not scores:
        return list(candidates)
    top = max(scores)
    return [e for e in candidates if e.cv is not None and e.cv >= top - EPSILON]


def choose(
    entries: list[Entry],
    tolerance: float | None,
    threshold: float | None,
    tie_break: str = "cv",
) -> tuple[dict[str, object], list[Entry]]:
    """(rule description, selected entries), in `entries`' order (callers sort them by _rank).

    Threshold: every model with error <= E. Tolerance: the models within T of the best accuracy
    are tied; `tie_break` "cv" keeps those of them with the best cross-validated accuracy,
    "none" keeps them all (the original example's rule when T is 0)."""
    if tie_break not in TIE_BREAKS:
        raise StageError(
            "--tie-break", f"must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}"
        )
    if threshold is not None:
        rule: dict[str, object] = {"kind": "threshold", "max_error": threshold}
        return rule, [e for e in entries if 1.0 - e.accuracy <= threshold + EPSILON]
    tol = tolerance or 0.0
    rule = {"kind": "tolerance", "tolerance": tol, "tie_break": tie_break}
    candidates = tied(entries, tol)
    return rule, break_ties(candidates) if tie_break == "cv" else candidates


def leaderboard(entries: list[Entry], chosen: list[Entry]) -> bytes:
    """CSV, best first; cv_accuracy is empty for a model without a _cv.txt."""
    names = {e.name for e in chosen}
    lines = ["model,C,gamma,accuracy,cv_accuracy,selected"]
    for e in entries:
        c, gamma = e.params
        cv = "" if e.cv is None else f"{e.cv}"
        lines.append(f"{e.name},{c},{gamma},{e.accuracy},{cv},{str(e.name in names).lower()}")
    return ("\n".join(lines) + "\n").encode()


def _body(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    tolerance, threshold = args.tolerance, args.threshold
    if tolerance is None and threshold is None:
        threshold = _env_float("SELECT_THRESHOLD")
        tolerance = None if threshold is not None else _env_float("SELECT_TOLERANCE")
    if (tolerance is not None and tolerance < 0) or (threshold is not None and threshold < 0):
        raise StageError("--tolerance/--threshold", "must not be negative")
    tie_break = args.tie_break or os.environ.get("SELECT_TIE_BREAK", "").strip() or "cv"
    if tie_break not in TIE_BREAKS:
        raise StageError("env SELECT_TIE_BREAK", f"must be cv or none, got {tie_break!r}")
    entries = read_entries(args.metrics, args.models)
    rule, chosen = choose(entries, tolerance, threshold, tie_break)
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
        "best_cv_accuracy": entries[0].cv,
        "considered": len(entries),
        "tied": [e.name for e in tied(entries, tolerance or 0.0)] if threshold is None else [],
        "selected": [e.name for e in chosen],
    }
    outputs[args.output / "selected.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    write_atomic(outputs)
    print(
        f"stages.select: kept {len(chosen)} of {len(entries)} models "
        f"(best accuracy {entries[0].accuracy}, cross-validated {entries[0].cv}, rule {rule})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run("stages.select", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
