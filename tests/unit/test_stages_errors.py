"""Every bad input of the stages ends with one stderr line naming the file and the problem, a
non-zero exit, and no output written (not even a partial one).

Runs the stages' `main(argv)` in-process (plus real subprocesses of split and train for the exit
code and the absence of a traceback).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from stages import evaluate, select, split, train

ROOT = Path(__file__).resolve().parents[2]
IRIS = ROOT / "data" / "iris.csv"
GOOD_ROWS = IRIS.read_text().splitlines()


def _fails(
    main: Callable[[Sequence[str]], int],
    argv: list[str],
    out: Path,
    capsys: pytest.CaptureFixture[str],
    *needles: str,
) -> str:
    """Runs a stage expecting failure; returns its single stderr line."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert not out.exists() or not any(out.rglob("*")), f"partial output: {list(out.rglob('*'))}"
    return err


def _csv(tmp: Path, name: str, lines: list[str]) -> Path:
    path = tmp / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def trainset(tmp_path: Path) -> Path:
    return _csv(tmp_path, "train.csv", GOOD_ROWS[:80])


@pytest.fixture
def model_dir(tmp_path: Path, trainset: Path) -> Path:
    (tmp_path / "c").write_text("1.0\n")
    (tmp_path / "g").write_text("0.25\n")
    argv = [
        "--train",
        str(trainset),
        "--c",
        str(tmp_path / "c"),
        "--gamma",
        str(tmp_path / "g"),
        "--output",
        str(tmp_path / "models"),
    ]
    assert train.main(argv) == 0
    return tmp_path / "models"


# --- split -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "needles"),
    [
        (["5.1,3.5,1.4,0.2"], ["line 1", "expected 5 columns", "found 4"]),
        (["5.1,3.5,1.4,0.2,Iris-setosa,extra"], ["line 1", "found 6"]),
        (
            [*GOOD_ROWS[:3], "5.1,3.5,1.4,0.2,Iris-unknown"],
            ["line 4", "unknown species 'Iris-unknown'"],
        ),
        (["5.1,abc,1.4,0.2,Iris-setosa"], ["line 1", "not a number"]),
        (["Sepal_Length,Sepal_Width,Petal_Length,Petal_Width,Species"], ["line 1", "not a number"]),
        ([], ["no data rows"]),
    ],
    ids=["too-few-columns", "too-many-columns", "unknown-label", "bad-number", "header", "empty"],
)
def test_split_rejects_bad_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], needles: list[str]
) -> None:
    bad = _csv(tmp_path, "iris.csv", lines)
    out = tmp_path / "out"
    _fails(split.main, ["--input", str(bad), "--output", str(out)], out, capsys, str(bad), *needles)


def test_split_refuses_an_empty_test_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_each = [
        GOOD_ROWS[0],
        next(r for r in GOOD_ROWS if "versicolor" in r),
        next(r for r in GOOD_ROWS if "virginica" in r),
    ]
    bad = _csv(tmp_path, "iris.csv", one_each)
    out = tmp_path / "out"
    _fails(
        split.main,
        ["--input", str(bad), "--output", str(out)],
        out,
        capsys,
        str(bad),
        "test set would be empty",
    )


def test_split_input_must_be_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "raw_data"
    repo.mkdir()
    shutil.copyfile(IRIS, repo / "a.csv")
    shutil.copyfile(IRIS, repo / "b.csv")
    out = tmp_path / "out"
    _fails(
        split.main,
        ["--input", str(repo), "--output", str(out)],
        out,
        capsys,
        str(repo),
        "exactly one",
        "found 2",
    )
    _fails(
        split.main,
        ["--input", str(tmp_path / "nope"), "--output", str(out)],
        out,
        capsys,
        "nope",
        "not found",
    )
    _fails(
        split.main,
        ["--input", str(IRIS), "--output", str(out), "--test-fraction", "1.5"],
        out,
        capsys,
        "--test-fraction",
        "between 0 and 1",
    )


# --- train -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c_text", "g_text", "bad", "needles"),
    [
        ("abc", "0.25", "c", ["C is not a number: 'abc'"]),
        ("", "0.25", "c", ["C is not a number: ''"]),
        ("1.0", "0.1 0.2", "g", ["gamma is not a number"]),
        ("-1", "0.25", "c", ["positive"]),
        ("1.0", "nan", "g", ["positive finite"]),
    ],
    ids=["word", "empty", "two-values", "negative", "nan"],
)
def test_train_rejects_bad_parameter_files(
    tmp_path: Path,
    trainset: Path,
    capsys: pytest.CaptureFixture[str],
    c_text: str,
    g_text: str,
    bad: str,
    needles: list[str],
) -> None:
    datum = tmp_path / "pfs"
    (datum / "c" / "c_parameters.txt").mkdir(parents=True)
    (datum / "g").mkdir()
    (datum / "c" / "c_parameters.txt" / "0000000000000000").write_text(c_text)
    (datum / "g" / "0000000000000003").write_text(g_text)
    out = tmp_path / "out"
    argv = [
        "--train",
        str(trainset),
        "--c",
        str(datum / "c"),
        "--gamma",
        str(datum / "g"),
        "--output",
        str(out),
    ]
    err = _fails(train.main, argv, out, capsys, *needles)
    assert str(datum / bad) in err  # names the actual parameter file, not just the directory


def test_train_rejects_bad_training_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c").write_text("1.0")
    (tmp_path / "g").write_text("0.25")
    out = tmp_path / "out"
    base = ["--c", str(tmp_path / "c"), "--gamma", str(tmp_path / "g"), "--output", str(out)]
    unknown = _csv(tmp_path, "unknown.csv", [*GOOD_ROWS[:5], "1,2,3,4,Iris-bogus"])
    _fails(
        train.main,
        ["--train", str(unknown), *base],
        out,
        capsys,
        str(unknown),
        "line 6",
        "unknown species",
    )
    one_class = _csv(tmp_path, "setosa.csv", [r for r in GOOD_ROWS if "setosa" in r])
    _fails(
        train.main,
        ["--train", str(one_class), *base],
        out,
        capsys,
        str(one_class),
        "at least two species",
    )
    twofiles = tmp_path / "cdir"
    twofiles.mkdir()
    (twofiles / "0").write_text("1")
    (twofiles / "1").write_text("2")
    _fails(
        train.main,
        ["--train", str(IRIS), "--c", str(twofiles), *base[2:]],
        out,
        capsys,
        str(twofiles),
        "exactly one C value file",
        "found 2",
    )


# --- evaluate --------------------------------------------------------------------------------


def test_evaluate_needs_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "model"
    empty.mkdir()
    out = tmp_path / "out"
    _fails(
        evaluate.main,
        ["--models", str(empty), "--test", str(IRIS), "--output", str(out)],
        out,
        capsys,
        str(empty),
        "no models",
    )


def test_evaluate_rejects_corrupt_model_and_bad_test_set(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    empty = _csv(tmp_path, "test.csv", [])
    _fails(
        evaluate.main,
        ["--models", str(model_dir), "--test", str(empty), "--output", str(out)],
        out,
        capsys,
        str(empty),
        "no data rows",
    )
    wrong = _csv(tmp_path, "wrong.csv", ["1,2,3,Iris-setosa"])
    _fails(
        evaluate.main,
        ["--models", str(model_dir), "--test", str(wrong), "--output", str(out)],
        out,
        capsys,
        str(wrong),
        "expected 5 columns",
    )
    corrupt = model_dir / "model_C9.0_G9.0.pkl"
    corrupt.write_bytes(b"not a pickle")
    _fails(
        evaluate.main,
        ["--models", str(model_dir), "--test", str(IRIS), "--output", str(out)],
        out,
        capsys,
        str(corrupt),
        "cannot load model",
    )


# --- select ----------------------------------------------------------------------------------


def _metrics(tmp: Path, model_dir: Path, values: dict[str, str]) -> Path:
    metrics = tmp / "metrics"
    metrics.mkdir(exist_ok=True)
    model = next(model_dir.glob("*.pkl"))
    for name, text in values.items():
        (metrics / f"{name}_metric.txt").write_text(text)
        if not (model_dir / f"{name}.pkl").exists():
            shutil.copyfile(model, model_dir / f"{name}.pkl")
    return metrics


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("high", "accuracy is not a number: 'high'"),
        ("1.5", "between 0 and 1"),
        ("", "not a number"),
    ],
)
def test_select_rejects_bad_metrics(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], value: str, needle: str
) -> None:
    metrics = _metrics(tmp_path, model_dir, {"model_C1.0_G0.25": "0.9", "model_C2.0_G0.5": value})
    out = tmp_path / "out"
    argv = ["--metrics", str(metrics), "--models", str(model_dir), "--output", str(out)]
    _fails(select.main, argv, out, capsys, str(metrics / "model_C2.0_G0.5_metric.txt"), needle)


def test_select_needs_metrics_with_models(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    empty = tmp_path / "nometrics"
    empty.mkdir()
    argv = ["--metrics", str(empty), "--models", str(model_dir), "--output", str(out)]
    _fails(select.main, argv, out, capsys, str(empty), "no metrics")
    metrics = _metrics(tmp_path, model_dir, {"model_C1.0_G0.25": "0.9"})
    orphan = metrics / "model_C7.0_G7.0_metric.txt"
    orphan.write_text("0.5")
    argv = ["--metrics", str(metrics), "--models", str(model_dir), "--output", str(out)]
    _fails(select.main, argv, out, capsys, str(orphan), "no model model_C7.0_G7.0.pkl")


def test_select_fails_when_the_rule_keeps_nothing(
    tmp_path: Path,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = _metrics(tmp_path, model_dir, {"model_C1.0_G0.25": "0.9", "model_C2.0_G0.5": "0.8"})
    out = tmp_path / "out"
    argv = ["--metrics", str(metrics), "--models", str(model_dir), "--output", str(out)]
    _fails(
        select.main,
        [*argv, "--threshold", "0.05"],
        out,
        capsys,
        "no model meets the rule",
        "best accuracy 0.9",
    )
    monkeypatch.setenv("SELECT_THRESHOLD", "ten percent")
    _fails(select.main, argv, out, capsys, "SELECT_THRESHOLD", "not a number")
    monkeypatch.setenv("SELECT_THRESHOLD", "0.15")  # keeps 0.9 only
    assert select.main(argv) == 0
    assert sorted(p.name for p in out.glob("*.pkl")) == ["model_C1.0_G0.25.pkl"]


# Two real processes suffice: every stage shares stages.common.run, tested in-process above, and
# each start-up that imports scikit-learn costs seconds on a busy two-core machine.
@pytest.mark.parametrize("module", ["split", "train"])
def test_real_process_exits_nonzero_without_traceback(tmp_path: Path, module: str) -> None:
    bad = _csv(tmp_path, "bad.csv", ["1,2,3"])
    (tmp_path / "p").write_text("x")
    out = tmp_path / "out"
    argv = {
        "split": ["--input", str(bad)],
        "train": ["--train", str(IRIS), "--c", str(tmp_path / "p"), "--gamma", str(tmp_path / "p")],
        "evaluate": ["--models", str(tmp_path / "none"), "--test", str(IRIS)],
        "select": ["--metrics", str(tmp_path / "none"), "--models", str(tmp_path)],
    }[module]
    done = subprocess.run(
        [sys.executable, "-m", f"stages.{module}", *argv, "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.startswith(f"stages.{module}: error: ") and len(done.stderr.splitlines()) == 1
    )
    assert not out.exists()
