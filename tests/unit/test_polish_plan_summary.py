"""The plan's one-line summary names what each count is about (repos vs pipelines)."""

from __future__ import annotations

from pathlib import Path

from agent.cluster.model import LiveState
from agent.plan import Policy, plan, render
from agent.plan.render import summary
from agent.specs import load_desired

ROOT = Path(__file__).resolve().parents[2]


def test_summary_of_a_first_apply() -> None:
    p = plan(load_desired(ROOT / "specs"), LiveState((), (), {}), Policy("src", commit="c" * 40))
    assert summary(p) == ("2 repo(s) to create, 4 pipeline(s) to create, 0 to update "
                          "(0 with reprocess, 0 datums to re-run), 0 to delete, 0 drifted, "
                          "0 unchanged")
    assert "Summary: " + summary(p) in render(p, "text")
    assert f"**{summary(p)}**" in render(p, "markdown")
