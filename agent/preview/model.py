"""PURE: the outcome of one preview, as `flow` builds it and `markdown` and the JSON show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.preview.compare import Comparison
from agent.preview.run import RunResult


@dataclass(frozen=True)
class Preview:
    base_ref: str
    base_commit: str
    base_tree: str
    head_commit: str  # HEAD of the working tree ("" outside git)
    plan_markdown: str  # `plan --format markdown` of the working tree against the base run
    plan: dict[str, Any]  # the same plan as JSON data (agent.plan.render.to_dict)
    base: RunResult
    head: RunResult | None  # None: nothing to run (the plan re-runs nothing, no data change)
    comparison: Comparison | None
    base_cached: bool  # the base run came from the cache
    image_bumped: bool  # stage code changed: specs applied with a preview image tag
    html: str = ""  # path of preview.html, when written
    warnings: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        """A job the head run started failed (exit 1)."""
        return self.comparison is not None and any(
            j.state != "SUCCESS" for j in self.comparison.head_jobs)
