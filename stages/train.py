r"""Stage `train`: fits one SVM for one (C, gamma) pair and saves it with joblib.

Run by the `model` pipeline (specs/pipelines/model.yaml), one datum per C x gamma pair. The
pipeline sets `datum_batching: true`: under a batching worker (`PPS_WORKER_GRPC_PORT` set) one
process runs datum after datum through python-pachyderm's `worker.batch_datum()`, reading the
same paths again for each (`stages.batching`); without it, one datum from the arguments:

    python3 -m stages.train --train /pfs/split/train.csv --c /pfs/c --gamma /pfs/gamma \
        --output /pfs/out [--kernel rbf]

--train   the training CSV (file, or directory holding exactly one file)
--c       the file holding one C value, or a directory holding exactly that one file (the datum's
          glob `/c_parameters.txt/*` puts it at /pfs/c/c_parameters.txt/<16 hex digits>)
--gamma   the same for gamma
--output  directory that receives model_C{c}_G{g}.pkl, where {c} and {g} are Python's
          str(float(text)) of the files' contents (0.500 -> 0.5, 32768.000 -> 32768.0)
--kernel  SVC kernel: rbf (default), linear, poly or sigmoid. The original example used linear,
          which ignores gamma and so made the gamma search meaningless.

Exit 1 with one line on stderr (file and problem) on bad input; nothing is written then (under
a batching worker that datum alone fails, and the process goes on with the next).
scikit-learn and joblib are imported at module level on purpose: a warm worker runtime imports
this module once and then calls `main(argv)` per datum.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import joblib
from sklearn.svm import SVC

from stages import batching
from stages.common import Row, StageError, parse_number, read_iris, run, single_file, write_atomic

KERNELS = ("rbf", "linear", "poly", "sigmoid")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m stages.train",
        description="Train one SVC for one C and one gamma value; write model_C{c}_G{g}.pkl.",
    )
    parser.add_argument(
        "--train",
        required=True,
        type=Path,
        help="training CSV, or a directory holding exactly one file",
    )
    parser.add_argument(
        "--c",
        required=True,
        type=Path,
        help="file with one C value, or a directory holding exactly one such file",
    )
    parser.add_argument(
        "--gamma",
        required=True,
        type=Path,
        help="file with one gamma value, or a directory holding exactly one such file",
    )
    parser.add_argument("--output", required=True, type=Path, help="directory for the model")
    parser.add_argument(
        "--kernel",
        choices=KERNELS,
        default="rbf",
        help="SVC kernel (default rbf; linear ignores gamma)",
    )
    return parser


def model_name(c: float, gamma: float) -> str:
    """The original example's file name: model_C0.5_G0.001.pkl."""
    return f"model_C{c}_G{gamma}.pkl"


def fit(rows: list[Row], c: float, gamma: float, kernel: str) -> SVC:
    model = SVC(C=c, gamma=gamma, kernel=kernel)
    model.fit([row.features for row in rows], [row.label for row in rows])
    return model


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _datum(args: argparse.Namespace) -> None:
    """One datum: reads every input from its path again, fits, writes the model."""
    c = parse_number(single_file(args.c, "C value"), "C")
    gamma = parse_number(single_file(args.gamma, "gamma value"), "gamma")
    train_file = single_file(args.train, "training CSV")
    rows = read_iris(train_file)
    if len({row.label for row in rows}) < 2:
        raise StageError(train_file, "needs at least two species to train a classifier")
    model = fit(rows, c, gamma, args.kernel)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    write_atomic({args.output / model_name(c, gamma): buffer.getvalue()})
    print(f"stages.train: {model_name(c, gamma)}: {args.kernel} SVC on {len(rows)} rows")


def _body(argv: Sequence[str] | None) -> None:
    _datum(_parse(argv))


def main(argv: Sequence[str] | None = None) -> int:
    if batching.under_batching_worker():
        from python_pachyderm import Client  # here, so only batching mode loads grpc

        return batching.serve("stages.train", batching.worker_of(Client), _parse, _datum, argv)
    return run("stages.train", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
