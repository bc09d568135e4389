r"""Stage `evaluate`: the accuracy of each model on the test CSV, and a finer tie-breaking score.

Run by the `test` pipeline (specs/pipelines/test.yaml), one datum per model (glob `/*`). The
pipeline sets `datum_batching: true`: under a batching worker (`PPS_WORKER_GRPC_PORT` set) one
process runs datum after datum through python-pachyderm's `worker.batch_datum()`, reading the
same paths again for each (`stages.batching`); without it, one datum from the arguments:

    python3 -m stages.evaluate --models /pfs/model --test /pfs/split/test.csv \
        --train /pfs/split/train.csv --output /pfs/out

--models  a model file (.pkl) or a directory; every *.pkl under it is scored
--test    the test CSV (file, or directory holding exactly one file)
--train   the training CSV (optional): also write each model's cross-validated accuracy
--output  directory that receives <model name without .pkl>_metric.txt for each model, holding
          the accuracy as text (e.g. 0.95), the original example's format, and with --train
          <model>_cv.txt holding its cross-validated accuracy on the training split

Why cross-validated accuracy breaks the ties. The test set is small (20 rows with the shipped
data), so test accuracy moves in steps of 0.05 and half of the grid ties at 1.0. Stratified 5-fold
cross-validation of the model's own hyperparameters (same SVC, refitted on 4/5 of train.csv,
scored on the other 1/5, each row predicted once) scores every model on all 80 training rows:
four times the resolution, from data the test accuracy did not use, so it is independent
evidence; it is the estimator scikit-learn's GridSearchCV selects hyperparameters by. The
alternatives need more: log loss needs probability outputs (SVC's Platt scaling runs its own
randomised internal CV and can disagree with predict), and decision margins are on scales that
differ between C and gamma values. Deterministic: folds without shuffling (in file order within
each species), libsvm without probability is deterministic, so the same files give the same
score. Folds: min(5, rows of the smallest species); fewer than 2 is an error naming the file.

Exit 1 with one line on stderr (file and problem) when there is no model, a model cannot be
loaded, or the test CSV is bad or empty; nothing is written then (under a batching worker that
datum alone fails, and the process goes on with the next).
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
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from stages import batching
from stages.common import Row, StageError, read_iris, run, single_file, write_atomic

METRIC_SUFFIX = "_metric.txt"
CV_SUFFIX = "_cv.txt"
CV_FOLDS = 5


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
    parser.add_argument(
        "--train",
        type=Path,
        default=None,
        help="training CSV (or a directory holding exactly one file): also write <model>_cv.txt, "
        "the model's stratified 5-fold cross-validated accuracy on it",
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


def cv_folds(rows: list[Row], where: Path) -> int:
    """How many stratified folds the training rows allow: min(5, smallest species' count)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.label] = counts.get(row.label, 0) + 1
    folds = min(CV_FOLDS, *counts.values())
    if len(counts) < 2 or folds < 2:
        raise StageError(
            where,
            "cross-validation needs at least 2 training rows of at least 2 species "
            f"(found {counts}); add rows or leave out --train",
        )
    return folds


def cv_accuracy(model: Any, rows: list[Row], folds: int, where: Path) -> float:
    """Share of `rows` predicted right when each is held out in one of `folds` stratified folds
    and `model`'s hyperparameters are refitted on the others (an unfitted copy, sklearn's clone,
    so the saved model is not changed). A ratio of integers, so equal scores are exact ties."""
    labels = [row.label for row in rows]
    try:
        predicted = cross_val_predict(
            clone(model),
            [row.features for row in rows],
            labels,
            cv=StratifiedKFold(n_splits=folds, shuffle=False),
        )
    except Exception as exc:  # a model whose parameters cannot fit these rows
        raise StageError(where, f"cannot cross-validate the model: {exc}") from None
    return sum(1 for guess, label in zip(predicted, labels, strict=True) if guess == label) / len(
        rows
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _datum(args: argparse.Namespace) -> None:
    """One datum: reads the models and CSVs from their paths again, writes the scores."""
    models = find_models(args.models)
    rows = read_iris(single_file(args.test, "test CSV"))  # an empty CSV fails here
    train: list[Row] = []
    folds = 0
    if args.train is not None:
        train_file = single_file(args.train, "training CSV")
        train = read_iris(train_file)
        folds = cv_folds(train, train_file)
    outputs = {}
    for path in models:
        model = load_model(path)
        score = accuracy(model, rows, path)
        outputs[args.output / f"{path.stem}{METRIC_SUFFIX}"] = f"{score}".encode()
        line = f"stages.evaluate: {path.name}: accuracy {score} on {len(rows)} test rows"
        if train:
            cv = cv_accuracy(model, train, folds, path)
            outputs[args.output / f"{path.stem}{CV_SUFFIX}"] = f"{cv}".encode()
            line += f", cross-validated accuracy {cv} ({folds} folds of {len(train)} rows)"
        print(line)
    write_atomic(outputs)


def _body(argv: Sequence[str] | None) -> None:
    _datum(_parse(argv))


def main(argv: Sequence[str] | None = None) -> int:
    if batching.under_batching_worker():
        from python_pachyderm import Client  # here, so only batching mode loads grpc

        return batching.serve("stages.evaluate", batching.worker_of(Client), _parse, _datum, argv)
    return run("stages.evaluate", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
