"""stages.select's ranking: test accuracy, then cross-validated accuracy (the tie-breaker), then
the simplest model; the tolerance makes models tied on accuracy, the tie-break narrows them.

The bug this guards against: with the shipped data 40 of 77 models tie at accuracy 1.0 on the
20-row test set and `select` kept all 40, so "best" said little. Pure tests of `choose` and
`_rank` on synthetic entries, a property test against the original example's rule, and the
linear kernel through the real stages (train, evaluate, select) on the shipped data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages import evaluate, select, split, train
from stages.select import Entry, _rank, choose

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"


def entry(c: float, gamma: float, accuracy: float, cv: float | None = None) -> Entry:
    name = f"model_C{c}_G{gamma}"
    return Entry(name, accuracy, Path(f"{name}.pkl"), cv)


def ranked(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=_rank)


def names(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


def original_rule(entries: list[Entry]) -> list[str]:
    """The original example's select (bash): keep every model whose metric equals the best."""
    best = max(e.accuracy for e in entries)
    return sorted(e.name for e in entries if e.accuracy == best)


@pytest.mark.parametrize(
    "entries, kept",
    [
        # two tie on accuracy: the better cross-validated one wins, whatever its C
        ([entry(1, 1, 1.0, 0.9), entry(8, 1, 1.0, 0.95), entry(2, 1, 0.95, 1.0)], ["model_C8_G1"]),
        # several share the best cross-validated accuracy: all of them stay (no coin flip)
        (
            [entry(1, 1, 1.0, 0.95), entry(8, 1, 1.0, 0.95), entry(2, 2, 1.0, 0.9)],
            ["model_C1_G1", "model_C8_G1"],
        ),
        # a lower accuracy never wins on cv alone at tolerance 0
        ([entry(1, 1, 0.9, 0.9), entry(2, 1, 0.85, 1.0)], ["model_C1_G1"]),
        # one model alone at the best accuracy: the tie-break has nothing to do
        ([entry(1, 1, 1.0, 0.5), entry(2, 1, 0.95, 1.0), entry(4, 1, 0.95, 0.99)], ["model_C1_G1"]),
    ],
)
def test_ties_on_accuracy_are_broken_by_cross_validated_accuracy(
    entries: list[Entry], kept: list[str]
) -> None:
    rule, chosen = choose(ranked(entries), 0.0, None)
    assert sorted(names(chosen)) == kept
    assert rule == {"kind": "tolerance", "tolerance": 0.0, "tie_break": "cv"}


def test_the_ranking_is_accuracy_then_cv_then_the_simplest_model() -> None:
    entries = [
        entry(8, 1, 1.0, 0.95),
        entry(2, 4, 1.0, 0.975),
        entry(0.5, 1, 0.95, 1.0),
        entry(2, 1, 1.0, 0.975),
        entry(1, 1, 1.0, None),  # no _cv.txt: after every scored model of its accuracy
    ]
    assert names(ranked(entries)) == [
        "model_C2_G1",
        "model_C2_G4",
        "model_C8_G1",
        "model_C1_G1",
        "model_C0.5_G1",
    ]


def test_tolerance_applies_to_accuracy_and_cv_decides_among_the_tied() -> None:
    entries = ranked(
        [
            entry(1, 1, 1.0, 0.9),
            entry(2, 1, 0.95, 0.975),
            entry(4, 1, 0.9, 1.0),
            entry(8, 1, 0.8, 1.0),
        ]
    )
    assert names(choose(entries, 0.0, None)[1]) == ["model_C1_G1"]
    assert names(choose(entries, 0.05, None)[1]) == ["model_C2_G1"]  # one test row of 20: a tie
    assert names(choose(entries, 0.1, None)[1]) == ["model_C4_G1"]
    assert names(choose(entries, 0.1, None, "none")[1]) == [
        "model_C1_G1",
        "model_C2_G1",
        "model_C4_G1",
    ]
    # a threshold is a quality bar, not a "best": every model meeting it, ties not broken
    assert len(choose(entries, None, 0.1)[1]) == 3


def test_without_cv_scores_every_tied_model_is_kept() -> None:
    entries = ranked([entry(1, 1, 1.0), entry(2, 1, 1.0), entry(4, 1, 0.9)])
    assert names(choose(entries, 0.0, None)[1]) == ["model_C1_G1", "model_C2_G1"]


accuracies = st.sampled_from([i / 20 for i in range(21)])  # 20 test rows, like the shipped split
scores = st.none() | st.sampled_from([i / 80 for i in range(81)])


@pytest.mark.fuzz
@given(st.lists(st.tuples(accuracies, scores), min_size=1, max_size=30))
def test_tie_break_none_at_tolerance_0_is_the_original_rule_and_cv_narrows_it(
    values: list[tuple[float, float | None]],
) -> None:
    entries = ranked([entry(i + 1, 1, acc, cv) for i, (acc, cv) in enumerate(values)])
    assert sorted(names(choose(entries, 0.0, None, "none")[1])) == original_rule(entries)
    kept = choose(entries, 0.0, None)[1]
    assert kept and set(names(kept)) <= set(original_rule(entries))
    tied_scores = [e.cv for e in entries if e.name in original_rule(entries) and e.cv is not None]
    if tied_scores:
        assert {e.cv for e in kept} == {max(tied_scores)}
    assert names(kept) == [e.name for e in entries if e in kept]  # in ranking order


def test_an_unknown_tie_break_is_refused_with_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SELECT_TIE_BREAK", "random")
    argv = ["--metrics", str(tmp_path), "--models", str(tmp_path), "--output", str(tmp_path / "o")]
    assert select.main(argv) == 1
    err = capsys.readouterr().err
    assert "env SELECT_TIE_BREAK" in err and "cv or none" in err and "'random'" in err


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The original example's search: a linear SVM per C x gamma pair on the shipped data,
    each scored by the real stages (in-process: 77 fits take about a second)."""
    base = tmp_path_factory.mktemp("linear")
    assert split.main(["--input", str(DATA / "iris.csv"), "--output", str(base / "split")]) == 0
    cs = (DATA / "parameters/c_parameters.txt").read_text().split()
    gammas = (DATA / "parameters/gamma_parameters.txt").read_text().split()
    for i, (c, g) in enumerate((c, g) for c in cs for g in gammas):
        (base / f"p{i}").mkdir()
        (base / f"p{i}/c").write_text(c + "\n")
        (base / f"p{i}/g").write_text(g + "\n")
        argv = ["--train", str(base / "split/train.csv"), "--c", str(base / f"p{i}/c"),
                "--gamma", str(base / f"p{i}/g"), "--output", str(base / "model"),
                "--kernel", "linear"]  # fmt: skip
        assert train.main(argv) == 0
    argv = ["--models", str(base / "model"), "--test", str(base / "split/test.csv"),
            "--train", str(base / "split/train.csv"), "--output", str(base / "test")]  # fmt: skip
    assert evaluate.main(argv) == 0
    return base


def _select(base: Path, out: str, *extra: str) -> dict[str, object]:
    argv = ["--metrics", str(base / "test"), "--models", str(base / "model"),
            "--output", str(base / out), "--tolerance", "0", *extra]  # fmt: skip
    assert select.main(argv) == 0
    summary: dict[str, object] = json.loads((base / out / "selected.json").read_text())
    return summary


def test_linear_kernel_tolerance_0_reproduces_the_original_rule(linear: Path) -> None:
    metrics = {
        p.name[: -len("_metric.txt")]: p.read_text() for p in (linear / "test").glob("*_metric.txt")
    }
    best = max(metrics.values(), key=float)
    original = sorted(n for n, text in metrics.items() if text == best)  # the bash's `==`
    assert len(metrics) == 77
    plain = _select(linear, "none", "--tie-break", "none")
    assert sorted(plain["selected"]) == original  # type: ignore[arg-type]
    assert sorted(p.stem for p in (linear / "none").glob("*.pkl")) == original
    broken = _select(linear, "cv")
    assert sorted(broken["tied"]) == original  # type: ignore[arg-type]
    assert set(broken["selected"]) < set(original)  # type: ignore[arg-type]
    # linear ignores gamma: the 7 models of a C are one model, so they stay or go together
    kept_cs = {n.split("_G")[0] for n in broken["selected"]}  # type: ignore[union-attr]
    assert len(broken["selected"]) == 7 * len(kept_cs)  # type: ignore[arg-type]
