"""Runs the four stages on the seed data laid out like /pfs, datum by datum, as the DAG would.

split (1 datum) -> model (11 x 7 = 77 datums) -> test (77 datums) -> select (1 datum). Most
datums call the stage's `main(argv)` in-process (77 interpreter start-ups would cost minutes on
two cores); a few of each run as real `python -m stages.<name>` subprocesses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import pytest

from stages import evaluate, select, split, train

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


def param_values(name: str) -> list[str]:
    """The lines of data/parameters/<name>_parameters.txt, as `put file --split line` kept them."""
    text = (DATA / "parameters" / f"{name}_parameters.txt").read_text()
    return [line for line in text.splitlines() if line.strip()]


def put_param(pfs: Path, input_name: str, file_name: str, index: int, value: str) -> None:
    """One datum's view of a parameter: /pfs/<input>/<file_name>/<16 hex digits>."""
    target = pfs / input_name / file_name / f"{index:016x}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(value + "\n")


def raw_data(pfs: Path) -> Path:
    target = pfs / "raw_data" / "iris.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / "iris.csv", target)
    return target.parent


SUBPROCESS_DATUMS = {0, 76}  # these datums run through `python -m`, the rest in-process


def _stage(module: str, argv: list[str], in_process: bool) -> None:
    if in_process:
        mains = {
            "split": split.main,
            "train": train.main,
            "evaluate": evaluate.main,
            "select": select.main,
        }
        assert mains[module](argv) == 0
    else:
        done = subprocess.run(
            [sys.executable, "-m", f"stages.{module}", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four stages over the seed data; returns the root holding each pipeline's output repo."""
    base = tmp_path_factory.mktemp("dag")
    repos = base / "repos"  # each pipeline's output repo, as downstream datums see it
    raw = raw_data(base / "pfs-split")
    _stage("split", ["--input", str(raw), "--output", str(repos / "split")], False)
    cs, gammas = param_values("c"), param_values("gamma")
    datum = 0
    for ci, c in enumerate(cs):
        for gi, g in enumerate(gammas):
            pfs = base / f"pfs-model-{datum}"
            put_param(pfs, "c", "c_parameters.txt", ci, c)
            put_param(pfs, "gamma", "gamma_parameters.txt", gi, g)
            argv = [
                "--train",
                str(repos / "split" / "train.csv"),
                "--c",
                str(pfs / "c"),
                "--gamma",
                str(pfs / "gamma"),
                "--output",
                str(repos / "model"),
            ]
            _stage("train", argv, datum not in SUBPROCESS_DATUMS)
            datum += 1
    for index, model in enumerate(sorted((repos / "model").iterdir())):
        pfs = base / f"pfs-test-{index}"
        (pfs / "model").mkdir(parents=True)
        (pfs / "model" / model.name).symlink_to(model)  # glob /* puts one model per datum
        argv = [
            "--models",
            str(pfs / "model"),
            "--test",
            str(repos / "split" / "test.csv"),
            "--train",
            str(repos / "split" / "train.csv"),
            "--output",
            str(repos / "test"),
        ]
        _stage("evaluate", argv, index not in SUBPROCESS_DATUMS)
    argv = [
        "--metrics",
        str(repos / "test"),
        "--models",
        str(repos / "model"),
        "--output",
        str(repos / "select"),
    ]
    _stage("select", argv, False)
    return repos


def test_split_is_stratified_and_byte_identical_on_rerun(run: Path, tmp_path: Path) -> None:
    train_rows = (run / "split" / "train.csv").read_text().splitlines()
    test_rows = (run / "split" / "test.csv").read_text().splitlines()
    assert len(train_rows) + len(test_rows) == 100
    assert len(test_rows) == 20  # round(33*.2) + round(32*.2) + round(35*.2) = 7 + 6 + 7
    species = [row.rsplit(",", 1)[1] for row in test_rows]
    assert (
        species.count("Iris-setosa"),
        species.count("Iris-versicolor"),
        species.count("Iris-virginica"),
    ) == (7, 6, 7)
    assert sorted(train_rows + test_rows) == sorted(
        (ROOT / "data/iris.csv").read_text().splitlines()
    )
    assert split.main(["--input", str(ROOT / "data/iris.csv"), "--output", str(tmp_path)]) == 0
    for name in ("train.csv", "test.csv"):
        assert (tmp_path / name).read_bytes() == (run / "split" / name).read_bytes()
    assert (
        split.main(
            [
                "--input",
                str(ROOT / "data/iris.csv"),
                "--output",
                str(tmp_path / "s7"),
                "--seed",
                "7",
            ]
        )
        == 0
    )
    assert (tmp_path / "s7/test.csv").read_bytes() != (run / "split/test.csv").read_bytes()


def test_one_model_per_c_gamma_pair_named_like_the_original(run: Path) -> None:
    models = sorted(p.name for p in (run / "model").iterdir())
    assert len(models) == 77
    expected = {
        f"model_C{float(c)}_G{float(g)}.pkl"
        for c in param_values("c")
        for g in param_values("gamma")
    }
    assert set(models) == expected
    assert "model_C0.5_G0.001.pkl" in models and "model_C32768.0_G4.0.pkl" in models
    model = joblib.load(run / "model" / "model_C0.5_G0.063.pkl")
    assert (model.C, model.gamma, model.kernel) == (0.5, 0.063, "rbf")
    assert not [p for p in (run / "model").iterdir() if p.name.startswith(".")]  # no temp files


def test_one_metric_and_one_cv_score_per_model(run: Path) -> None:
    metrics = sorted((run / "test").glob("*_metric.txt"))
    scores = sorted((run / "test").glob("*_cv.txt"))
    assert len(metrics) == len(scores) == 77 and len(list((run / "test").iterdir())) == 154
    models = {p.name for p in (run / "model").iterdir()}
    assert {p.name[: -len("_metric.txt")] + ".pkl" for p in metrics} == models
    assert {p.name[: -len("_cv.txt")] + ".pkl" for p in scores} == models
    for files in (metrics, scores):
        values = [float(p.read_text()) for p in files]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert len(set(values)) > 1  # gamma matters with rbf: the search is not flat
    # cross-validation predicts each of the 80 training rows once: a whole number of them right
    assert all((float(p.read_text()) * 80).is_integer() for p in scores)


def test_select_keeps_exactly_the_best(run: Path) -> None:
    out = run / "select"
    summary = json.loads((out / "selected.json").read_text())
    best = max(float(p.read_text()) for p in (run / "test").iterdir())
    assert summary["rule"] == {"kind": "tolerance", "tolerance": 0.0, "tie_break": "cv"}
    assert summary["best_accuracy"] == best and summary["considered"] == 77
    assert summary["selected"], "the selection is empty"
    assert sorted(p.name for p in out.glob("*.pkl")) == sorted(
        f"{n}.pkl" for n in summary["selected"]
    )
    board = (out / "leaderboard.csv").read_text().splitlines()
    assert board[0] == "model,C,gamma,accuracy,cv_accuracy,selected" and len(board) == 78
    ranks = [(float(line.split(",")[3]), float(line.split(",")[4])) for line in board[1:]]
    assert ranks == sorted(ranks, reverse=True)  # accuracy, then cross-validated accuracy
    selected_rows = [line for line in board[1:] if line.endswith(",true")]
    assert len(selected_rows) == len(summary["selected"])
    assert all(float(line.split(",")[3]) == best for line in selected_rows)
    name, c, gamma = board[1].split(",")[:3]
    assert name == f"model_C{c}_G{gamma}"
    # the shipped data: 40 models tie at accuracy 1.0 on the 20 test rows; cross-validation on
    # the 80 training rows keeps the 4 on the C x gamma = 0.5 ridge (0.975: 78 of 80 right)
    assert len(summary["tied"]) == 40 and summary["best_cv_accuracy"] == 0.975
    assert summary["selected"] == [
        "model_C8.0_G0.063",
        "model_C32.0_G0.016",
        "model_C128.0_G0.004",
        "model_C512.0_G0.001",
    ]


def test_select_rules_from_env_and_options(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["--metrics", str(run / "test"), "--models", str(run / "model")]
    monkeypatch.setenv("SELECT_TOLERANCE", "0.05")
    assert select.main([*base, "--output", str(tmp_path / "tol")]) == 0
    tol = json.loads((tmp_path / "tol/selected.json").read_text())
    exact = json.loads((run / "select/selected.json").read_text())
    assert tol["rule"] == {"kind": "tolerance", "tolerance": 0.05, "tie_break": "cv"}
    assert set(tol["tied"]) >= set(exact["tied"]) and tol["best_cv_accuracy"] >= 0.975
    monkeypatch.setenv("SELECT_THRESHOLD", "1")  # threshold wins over tolerance: every model
    assert select.main([*base, "--output", str(tmp_path / "all")]) == 0
    assert len(json.loads((tmp_path / "all/selected.json").read_text())["selected"]) == 77
    monkeypatch.setenv("SELECT_THRESHOLD", "")  # empty means unset, as select.yaml ships it
    monkeypatch.setenv("SELECT_TOLERANCE", "0")
    assert select.main([*base, "--output", str(tmp_path / "env0")]) == 0
    assert (tmp_path / "env0/selected.json").read_bytes() == (
        run / "select/selected.json"
    ).read_bytes()
    perfect = sum(1 for p in (run / "test").iterdir() if float(p.read_text()) == 1.0)
    code = select.main([*base, "--output", str(tmp_path / "opt"), "--threshold", "0"])
    assert code == (0 if perfect else 1)
    if perfect:
        chosen = json.loads((tmp_path / "opt/selected.json").read_text())["selected"]
        assert len(chosen) == perfect


def test_linear_kernel_is_an_option(run: Path, tmp_path: Path) -> None:
    put_param(tmp_path / "pfs", "c", "c_parameters.txt", 2, "0.500")
    put_param(tmp_path / "pfs", "gamma", "gamma_parameters.txt", 0, "0.001")
    argv = [
        "--train",
        str(run / "split/train.csv"),
        "--c",
        str(tmp_path / "pfs/c"),
        "--gamma",
        str(tmp_path / "pfs/gamma"),
        "--output",
        str(tmp_path / "out"),
        "--kernel",
        "linear",
    ]
    assert train.main(argv) == 0
    assert joblib.load(tmp_path / "out/model_C0.5_G0.001.pkl").kernel == "linear"


@pytest.mark.parametrize("module", ["split", "train", "evaluate", "select"])
def test_help_documents_every_path_argument(
    module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process: the fixture above already runs every stage as a real `python -m` process.
    stage = {"split": split, "train": train, "evaluate": evaluate, "select": select}[module]
    with pytest.raises(SystemExit) as done:
        stage.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"python3 -m stages.{module}" in out and "--output" in out
    assert stage.__doc__ and f"python3 -m stages.{module}" in stage.__doc__
