"""PURE: what the head run changed against the base run (metrics, selection, jobs).

Used by `agent.preview.markdown` and the JSON output of `pachsync preview`. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.preview.run import JobResult, RunResult

EPSILON = 1e-9  # accuracies are ratios of small integers: smaller differences are float noise


@dataclass(frozen=True)
class Comparison:
    best_before: float | None
    best_after: float | None
    newly_selected: tuple[str, ...]
    no_longer_selected: tuple[str, ...]
    selected_before: int
    selected_after: int
    cells: int  # models with an accuracy in both runs
    cells_changed: int
    max_change: float  # largest |after - before|
    mean_change: float  # mean of after - before over all cells
    head_jobs: tuple[JobResult, ...]  # jobs the head run started (none: nothing ran)

    @property
    def selection_changed(self) -> bool:
        return bool(self.newly_selected or self.no_longer_selected)


def head_jobs(base: RunResult, head: RunResult) -> tuple[JobResult, ...]:
    """The newest jobs of the head run that the base run did not have."""
    seen = set(base.job_ids)
    return tuple(j for j in head.jobs if j.id not in seen)


def compare(base: RunResult, head: RunResult) -> Comparison:
    common = sorted(set(base.accuracy) & set(head.accuracy))
    deltas = [head.accuracy[m] - base.accuracy[m] for m in common]
    changed = [d for d in deltas if abs(d) > EPSILON]
    before, after = set(base.selected), set(head.selected)
    return Comparison(
        best_before=base.best_accuracy, best_after=head.best_accuracy,
        newly_selected=tuple(sorted(after - before)),
        no_longer_selected=tuple(sorted(before - after)),
        selected_before=len(before), selected_after=len(after),
        cells=len(common), cells_changed=len(changed),
        max_change=max((abs(d) for d in changed), default=0.0),
        mean_change=sum(deltas) / len(deltas) if deltas else 0.0,
        head_jobs=head_jobs(base, head),
    )  # fmt: skip
