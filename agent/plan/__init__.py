"""PURE planning: compare git's desired state with the live cluster, decide, and render.

`plan()` (agent.plan.diff) builds a `Plan` (agent.plan.model); `render_text`, `render_json` and
`render_markdown` (agent.plan.render) show it to people, scripts and pull-request comments.
Used by `agent.sync` and the `plan`/`apply`/`status` commands. No I/O anywhere in this package.
"""

from agent.plan.diff import diff_values, plan
from agent.plan.model import FieldDiff, PipelineChange, Plan, Policy, RepoChange
from agent.plan.render import render, render_json, render_markdown, render_text

__all__ = [
    "FieldDiff", "PipelineChange", "Plan", "Policy", "RepoChange", "diff_values", "plan",
    "render", "render_json", "render_markdown", "render_text",
]
