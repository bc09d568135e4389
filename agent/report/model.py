"""The report's data model: pure, frozen values built from what the cluster outputs hold.

`agent.report.collect` fills these from the live cluster (through `agent.cluster.outputs`);
unit tests build them from synthetic data. The renderers (`heatmap`, `dag`, `page`) read only
these types, so the whole report can be drawn without a server. No I/O here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# `model_C{c}_G{g}` where c and g are Python's str(float(...)) of the parameter files, optionally
# followed by the suffixes the stages add (`.pkl` for models, `_metric.txt` for test metrics).
_MODEL_RE = re.compile(r"^(?P<stem>model_C(?P<c>[^_/]+)_G(?P<g>[^_/]+?))(?:\.pkl|_metric\.txt)?$")


def model_stem(name: str) -> str | None:
    """`model_C0.5_G0.016` for any of its file names (`.pkl`, `_metric.txt`, a path); else None."""
    match = _MODEL_RE.match(name.rsplit("/", 1)[-1])
    if not match:
        return None
    try:
        float(match["c"]), float(match["g"])
    except ValueError:
        return None
    return match["stem"]


def parse_model_name(name: str) -> tuple[float, float]:
    """(C, gamma) of a model from its name; ValueError when the name does not follow the pattern."""
    match = _MODEL_RE.match(name.rsplit("/", 1)[-1])
    if not match:
        raise ValueError(f"not a model name (expected model_C<c>_G<gamma>): {name!r}")
    try:
        return float(match["c"]), float(match["g"])
    except ValueError:
        raise ValueError(f"C or gamma in {name!r} is not a number") from None


@dataclass(frozen=True)
class ModelResult:
    """One trained model's test accuracy, its cross-validated accuracy on the training split
    (the tie-breaker `stages.select` ranks by; None when unknown) and whether `select` kept it."""

    name: str  # the stem, e.g. "model_C0.5_G0.016"
    c: float
    gamma: float
    accuracy: float
    selected: bool = False
    cv: float | None = None


def rank_key(r: ModelResult) -> tuple[float, float, float, float]:
    """stages.select's order: accuracy, then cross-validated accuracy (unknown last), then the
    simplest model (smaller C, then smaller gamma)."""
    return (-r.accuracy, -r.cv if r.cv is not None else math.inf, r.c, r.gamma)


def results_from_metrics(
    metrics: Mapping[str, float],
    selected: Iterable[str] = (),
    cv: Mapping[str, float] | None = None,
) -> tuple[ModelResult, ...]:
    """ModelResults from {file or model name: accuracy}; names not matching the pattern are skipped.

    `cv` maps model (or file) names to their cross-validated accuracy. Sorted by `rank_key`,
    which is the leaderboard's order and select's.
    """
    chosen = {model_stem(n) or n for n in selected}
    scores = {model_stem(n) or n: float(v) for n, v in (cv or {}).items() if is_finite(v)}
    out = []
    for name, acc in metrics.items():
        stem = model_stem(name)
        if stem is None:
            continue
        c, g = parse_model_name(stem)
        out.append(ModelResult(stem, c, g, float(acc), stem in chosen, scores.get(stem)))
    return tuple(sorted(out, key=rank_key))


@dataclass(frozen=True)
class Grid:
    """Accuracy (or a difference) over C (rows) x gamma (columns); None where no model exists."""

    cs: tuple[float, ...]
    gammas: tuple[float, ...]
    values: tuple[tuple[float | None, ...], ...]
    selected: frozenset[tuple[int, int]] = frozenset()
    top: tuple[int, int] | None = None  # the first model in rank order, when ranked

    @property
    def cells(self) -> int:
        """How many cells hold a value."""
        return sum(v is not None for row in self.values for v in row)

    def best(self) -> tuple[int, int, float] | None:
        """(row, column, value) of the top-ranked model when the grid knows it (ties on accuracy
        broken by cross-validated accuracy), else of the highest value (the first in C, gamma
        order on ties)."""
        if self.top is not None:
            i, j = self.top
            value = self.values[i][j]
            if value is not None:
                return (i, j, value)
        found: tuple[int, int, float] | None = None
        for i, row in enumerate(self.values):
            for j, v in enumerate(row):
                if v is not None and (found is None or v > found[2]):
                    found = (i, j, v)
        return found


def build_grid(results: Iterable[ModelResult]) -> Grid:
    """The heatmap grid of a set of results: axes are the distinct C and gamma values, ascending.
    Its `best()` is the top-ranked model (`rank_key`)."""
    results = tuple(results)
    cs = tuple(sorted({r.c for r in results}))
    gammas = tuple(sorted({r.gamma for r in results}))
    return _grid_on(cs, gammas, results)


def build_cv_grid(results: Iterable[ModelResult]) -> Grid:
    """The same grid holding each model's cross-validated accuracy (None where unknown); the
    outline and the top model are those of the accuracy grid."""
    results = tuple(results)
    cs = tuple(sorted({r.c for r in results}))
    gammas = tuple(sorted({r.gamma for r in results}))
    return _grid_on(cs, gammas, results, cv=True)


def has_cv(results: Iterable[ModelResult]) -> bool:
    """Whether any result carries a cross-validated accuracy (select wrote the column)."""
    return any(r.cv is not None for r in results)


def _grid_on(
    cs: tuple[float, ...],
    gammas: tuple[float, ...],
    results: Iterable[ModelResult],
    cv: bool = False,
) -> Grid:
    results = tuple(results)
    index = {(r.c, r.gamma): r for r in results}
    values = tuple(
        tuple(
            (index[(c, g)].cv if cv else index[(c, g)].accuracy) if (c, g) in index else None
            for g in gammas
        )
        for c in cs
    )
    selected = frozenset(
        (i, j)
        for i, c in enumerate(cs)
        for j, g in enumerate(gammas)
        if (c, g) in index and index[(c, g)].selected
    )
    first = min(results, key=rank_key, default=None)
    top = (cs.index(first.c), gammas.index(first.gamma)) if first is not None else None
    return Grid(cs, gammas, values, selected, top)


def diff_grid(new: Iterable[ModelResult], old: Iterable[ModelResult]) -> Grid:
    """new - old accuracy on the union of both axes; None where either side lacks the model.

    The outline marks the models selected now (in `new`).
    """
    new, old = tuple(new), tuple(old)
    cs = tuple(sorted({r.c for r in new + old}))
    gammas = tuple(sorted({r.gamma for r in new + old}))
    now, before = _grid_on(cs, gammas, new), _grid_on(cs, gammas, old)
    values = tuple(
        tuple(
            None if a is None or b is None else a - b
            for a, b in zip(row_new, row_old, strict=True)
        )
        for row_new, row_old in zip(now.values, before.values, strict=True)
    )
    return Grid(cs, gammas, values, now.selected)


def format_param(value: float) -> str:
    """A parameter as people wrote it: 0.031, 0.5, 2, 32768 (no trailing .0, no exponent)."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.6g}"
    if "e" in text:
        text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text


@dataclass(frozen=True)
class JobView:
    """One job of one pipeline, as the report shows it."""

    id: str
    state: str  # e.g. "SUCCESS" (Pachyderm's JobState name without the JOB_ prefix)
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    recovered: int = 0
    total: int = 0
    started: float | None = None  # unix seconds
    finished: float | None = None
    pipeline_version: int = 0

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return max(0.0, self.finished - self.started)


@dataclass(frozen=True)
class PipelineView:
    """One pipeline: its inputs (edges of the graph), state, what it runs and its recent jobs."""

    name: str
    state: str  # e.g. "RUNNING" (PipelineState name without the PIPELINE_ prefix)
    inputs: tuple[str, ...]  # repos or pipelines it reads, de-duplicated, in spec order
    image: str = ""
    source_commit: str = ""  # pachsync.io/source-commit
    managed_by: str = ""  # pachsync.io/managed-by
    version: int = 0
    jobs: tuple[JobView, ...] = ()  # newest first

    @property
    def last_job(self) -> JobView | None:
        return self.jobs[0] if self.jobs else None


@dataclass(frozen=True)
class Selection:
    """select's outputs: the rule it applied, the best accuracy, the models it kept, and each
    model's cross-validated accuracy from leaderboard.csv's cv_accuracy column (empty when an
    older select wrote no such column)."""

    names: tuple[str, ...]
    best_accuracy: float | None = None
    rule: str = ""
    cv: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Comparison:
    """The results at an earlier output commit of `test`, to show what a change did."""

    commit: str
    results: tuple[ModelResult, ...]


@dataclass(frozen=True)
class ReportData:
    """Everything one report page shows."""

    results: tuple[ModelResult, ...]  # best first
    selection: Selection | None = None
    pipelines: tuple[PipelineView, ...] = ()
    repos: tuple[str, ...] = ()  # input repos (not pipeline outputs)
    pachd: str = ""
    test_commit: str = ""  # the output commit of `test` the results come from
    generated_at: float = 0.0
    comparison: Comparison | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def best(self) -> ModelResult | None:
        """The top-ranked model (accuracy, then cross-validated accuracy, then the simplest)."""
        return min(self.results, key=rank_key) if self.results else None


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass(frozen=True)
class ChangeSummary:
    """What changed between two result sets (now vs an earlier commit), model by model."""

    common: int  # models in both
    changed: int  # of those, how many changed accuracy
    improved: int
    worsened: int
    mean_change: float  # over the changed ones; 0.0 when none changed
    newly_selected: tuple[str, ...]
    no_longer_selected: tuple[str, ...]
    added: tuple[str, ...]  # models only now
    removed: tuple[str, ...]  # models only before
    best_before: float | None
    best_now: float | None


def summarize_change(new: Iterable[ModelResult], old: Iterable[ModelResult],
                     eps: float = 1e-12) -> ChangeSummary:  # fmt: skip
    """Compare two result sets by model name."""
    now, before = {r.name: r for r in new}, {r.name: r for r in old}
    common = sorted(now.keys() & before.keys())
    deltas = [now[n].accuracy - before[n].accuracy for n in common]
    moved = [d for d in deltas if abs(d) > eps]
    return ChangeSummary(
        common=len(common),
        changed=len(moved),
        improved=sum(d > eps for d in moved),
        worsened=sum(d < -eps for d in moved),
        mean_change=sum(moved) / len(moved) if moved else 0.0,
        newly_selected=tuple(n for n in common if now[n].selected and not before[n].selected),
        no_longer_selected=tuple(n for n in common if before[n].selected and not now[n].selected),
        added=tuple(sorted(now.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - now.keys())),
        best_before=max((r.accuracy for r in before.values()), default=None),
        best_now=max((r.accuracy for r in now.values()), default=None),
    )
