r"""Stage `split`: a deterministic, stratified split of the iris CSV into train.csv and test.csv.

Run by the `split` pipeline (specs/pipelines/split.yaml), one datum over the whole raw_data repo:

    python3 -m stages.split --input /pfs/raw_data --output /pfs/out \
        [--test-fraction 0.2] [--seed 42]

--input          the CSV file, or a directory holding exactly one file (the repo as a datum)
--output         directory that receives train.csv and test.csv (same format as the input: no
                 header; Sepal_Length, Sepal_Width, Petal_Length, Petal_Width, Species)
--test-fraction  share of each species that goes to test.csv (0 < f < 1, default 0.2)
--seed           seed of the shuffle (default 42)

Each species is shuffled on its own with `random.Random(seed)` and round(n * fraction) of its rows
go to the test set (at least one, and at least one left for training), so class proportions hold.
Rows keep their original text and order, so the same input and seed give byte-identical files.
Exit 1 with one line on stderr (file and problem) on bad input; nothing is written then.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from stages.common import LABELS, Row, StageError, read_iris, run, single_file, write_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m stages.split",
        description="Split the iris CSV into train.csv and test.csv, stratified by species.",
    )
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        help="the CSV file, or a directory holding exactly one file",
    )
    parser.add_argument(
        "--output", required=True, type=Path, help="directory for train.csv and test.csv"
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of each species put in test.csv, 0 < f < 1 (default 0.2)",
    )
    parser.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42)")
    return parser


def stratified_split(rows: list[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """(train, test), each in input order. Pure and deterministic for a given seed."""
    test_index: set[int] = set()
    for label in LABELS:
        members = [i for i, row in enumerate(rows) if row.label == label]
        if len(members) < 2:
            continue  # one row cannot be in both sets: it trains
        count = min(max(round(len(members) * fraction), 1), len(members) - 1)
        random.Random(f"{seed}:{label}").shuffle(members)
        test_index.update(members[:count])
    train = [row for i, row in enumerate(rows) if i not in test_index]
    test = [row for i, row in enumerate(rows) if i in test_index]
    return train, test


def _body(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if not 0.0 < args.test_fraction < 1.0:
        raise StageError("--test-fraction", f"must be between 0 and 1, got {args.test_fraction}")
    source = single_file(args.input, "input CSV")
    rows = read_iris(source)
    train, test = stratified_split(rows, args.test_fraction, args.seed)
    if not test:
        raise StageError(
            source,
            f"the test set would be empty ({len(rows)} rows); add rows or raise --test-fraction",
        )
    write_atomic(
        {
            args.output / "train.csv": _csv(train),
            args.output / "test.csv": _csv(test),
        }
    )
    print(
        f"stages.split: {source}: {len(train)} train rows, {len(test)} test rows (seed {args.seed})"
    )


def _csv(rows: list[Row]) -> bytes:
    return "".join(row.text + "\n" for row in rows).encode("utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    return run("stages.split", _body, argv)


if __name__ == "__main__":
    sys.exit(main())
