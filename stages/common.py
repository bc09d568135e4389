"""Shared helpers of the stages: reading inputs that Pachyderm lays out, failing cleanly, and
writing outputs atomically.

Used by `stages.split`, `stages.train`, `stages.evaluate` and `stages.select`. Standard library
only, so `python3 -m stages.split --help` stays fast. Every expected failure raises `StageError`,
which `run()` turns into one line on stderr (`<stage>: error: <file>: <problem>`) and exit code 1;
outputs go to a temporary name first and are renamed only when complete, so a failed datum never
leaves partial files behind.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The seed's schema: four measurements then the species, no header.
FEATURES = ("Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width")
LABELS = ("Iris-setosa", "Iris-versicolor", "Iris-virginica")
EXIT_FAILED = 1


class StageError(Exception):
    """An expected failure: `where` is the file (or option) at fault, `problem` says what."""

    def __init__(self, where: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = str(where)
        self.problem = problem


@dataclass(frozen=True)
class Row:
    """One CSV line: its features, its label and its exact original text."""

    features: tuple[float, float, float, float]
    label: str
    text: str


def run(
    stage: str, body: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None
) -> int:
    """Runs a stage's body, mapping `StageError` to one stderr line and a non-zero exit code."""
    try:
        body(argv)
    except StageError as exc:
        print(f"{stage}: error: {exc.where}: {exc.problem}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return 0


def single_file(path: Path, what: str) -> Path:
    """`path` itself if it is a file, else the one file inside the directory tree `path`.

    Pachyderm puts a datum's file at /pfs/<input>/<repo path>; with a glob like
    `/c_parameters.txt/*` that path differs per datum, so specs pass the input directory.
    """
    if path.is_file():
        return path
    if not path.is_dir():
        raise StageError(path, f"{what} not found")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if len(files) != 1:
        raise StageError(
            path, f"expected exactly one {what} file in this directory, found {len(files)}"
        )
    return files[0]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StageError(path, f"cannot read: {exc}") from None


def parse_number(path: Path, what: str) -> float:
    """The single number a parameter file holds; errors name the file and what it held."""
    text = read_text(path).strip()
    try:
        value = float(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise StageError(path, f"{what} is not a number: {shown!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise StageError(path, f"{what} must be a positive finite number, got {text!r}")
    return value


def read_iris(path: Path) -> list[Row]:
    """All rows of an iris CSV (no header, 4 numbers and a known species per line)."""
    rows = []
    lines = read_text(path).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = next(csv.reader(io.StringIO(line)))
        if len(fields) != len(FEATURES) + 1:
            raise StageError(
                path,
                f"line {number}: expected {len(FEATURES) + 1} columns "
                f"({', '.join(FEATURES)}, Species), found {len(fields)}",
            )
        try:
            a, b, c, d = (float(f) for f in fields[:4])
        except ValueError:
            raise StageError(
                path, f"line {number}: a measurement is not a number: {line!r}"
            ) from None
        label = fields[4].strip()
        if label not in LABELS:
            raise StageError(
                path,
                f"line {number}: unknown species {label!r} (expected one of {', '.join(LABELS)})",
            )
        rows.append(Row((a, b, c, d), label, line))
    if not rows:
        raise StageError(path, "no data rows")
    return rows


def write_atomic(files: dict[Path, bytes]) -> None:
    """Writes every file under a temporary name, then renames them all into place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            staged.append((Path(name), target))
            os.fchmod(fd, 0o644)  # mkstemp makes 0600; outputs are shared data
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    except OSError as exc:
        for staged_tmp, _ in staged:
            staged_tmp.unlink(missing_ok=True)
        raise StageError(next(iter(files)).parent, f"cannot write output: {exc}") from None
    for tmp, target in staged:
        os.replace(tmp, target)
