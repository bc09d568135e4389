"""Stage `evaluate`: the accuracy of each model on the test CSV, one metric file per model.

Run by the `test` pipeline (specs/pipelines/test.yaml), one datum per model (glob `/*`):

    python3 -m stages.evaluate --models /pfs/model --test /pfs/split/test.csv --output /pfs/out

--models  a model file (.pkl) or a directory; every *.pkl under it is scored
--test    the test CSV (file, or directory holding exactly one file)
--output  directory that receives <model name without .pkl>_metric.txt for each model, holding
          the accuracy as text (e.g. 0.95), the original example's format

Exit 1 with one line on stderr (file and problem) when there is no model, a model cannot be
loaded, or the test CSV is bad or empty; nothing is written then.
scikit-learn and joblib are imported at module level on purpose: a warm worker runtime imports
this module once and then calls `main(argv)` per datum.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import sklearn.svm  # noqa: F401  (unpickling the models needs it; imported here to be warm)

from stages.common import Row, StageError, read_iris, run, single_file, write_atomic

METRIC_SUFFIX = "_metric.txt"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m stages.evaluate",
        description="Score each model on the test CSV; write <model>_metric.txt with its accuracy.",
    )
    parser.add_argument(
        "--models",
        required=True,
        type=Path,
        help="a .pkl model or a directory of them (searched recursively)",
    )
    parser.add_argument(
        "--test", required=True, type=Path, help="test CSV, or a directory holding exactly one file"
    )
    parser.add_argument("--output", required=True, type=Path, help="directory for the metrics")
    return parser


def find_models(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise StageError(path, "models not found")
    models = sorted(p for p in path.rglob("*.pkl") if p.is_file())
    if not models:
        raise StageError(path, "no models (*.pkl) found")
    return models


def load_model(path: Path) -> Any:
    try:
        model = joblib.load(path)
    except Exception as exc:  # unpickling raises anything; all mean "not a model"
        raise StageError(path, f"cannot load model: {type(exc).__name__}: {exc}") from None
    if not hasattr(model, "predict"):
        raise StageError(path, f"not a model: a {type(model).__name__} has no predict()")
    return model


def accuracy(model: Any, rows: list[Row], where: Path) -> float:
    try:
        predicted = model.predict([row.features for row in rows])
    except Exception as exc:  # a model trained on other features, say
        raise StageError(where, f"model cannot predict the test set: {exc}") from None
    hits = sum(1 for guess, row in zip(predicted, rows, strict=True) if guess == row.label)
    return hits / len(rows)


def _body(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    models = find_models(args.models)
    rows = read_iris(single_file(args.test, "test CSV"))  # an empty CSV fails here
    outputs = {}
    for path in models:
        score = accuracy(load_model(path), rows, path)
        outputs[args.output / f"{path.stem}{METRIC_SUFFIX}"] = f"{score}".encode()
        print(f"stages.evaluate: {path.name}: accuracy {score} on {len(rows)} test rows")
    write_atomic(outputs)


def main(argv: Sequence[str] | None = None) -> int:
    return run("stages.evaluate", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
