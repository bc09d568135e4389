"""PURE: preview.md, the pull request comment of `pachsync preview`.

Every value that comes from the pull request (model and pipeline names, refs, log lines, the
plan) is escaped with `agent.util.safetext` (`md_text`, `md_code`, `md_fence`), as
`plan --format markdown` does: nothing in the comment can become Markdown, HTML or an Azure
Pipelines logging command.
"""

from __future__ import annotations

from agent.preview.compare import Comparison
from agent.preview.model import Preview
from agent.preview.run import JobResult, RunResult
from agent.util.safetext import md_code, md_fence, md_text

IMAGES_NOTE = ("Images: on localpachd the stage code comes from the checkout (`stages/` of the "
               "base commit and of this branch), not from the image tags in the specs.")
NOTHING_TO_RUN = ("Nothing to run: the plan re-runs no datum and changes no data "
                  "(descriptions or metadata only), so no pipeline ran for this change.")
SHOW_MODELS = 15
UNRUNNABLE = "UNRUNNABLE"  # its upstream failed: the cause is shown with that upstream job
QUIET = {"SUCCESS", UNRUNNABLE}  # states shown without their logs


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(md_code(n) for n in names[:SHOW_MODELS])
    more = len(names) - SHOW_MODELS
    return shown + (f" and {more} more" if more > 0 else "") if names else "none"


def headline(p: Preview) -> str:
    c = p.comparison
    if c is None:
        return NOTHING_TO_RUN
    failed = [j for j in c.head_jobs if j.state not in QUIET]
    if failed:
        blocked = sum(1 for j in c.head_jobs if j.state == UNRUNNABLE)
        return ("**A preview job failed:** " + ", ".join(md_code(j.pipeline) for j in failed)
                + (f" ({blocked} downstream job(s) could not run)" if blocked else ""))
    if not c.head_jobs:
        return "The plan applied, but no job ran."
    what = "the selection changed" if c.selection_changed else "the selection is unchanged"
    return (f"Ran {len(c.head_jobs)} job(s); {what}; best accuracy {_acc(c.best_before)} → "
            f"{_acc(c.best_after)}; {c.cells_changed} of {c.cells} cells changed.")


def metric_lines(c: Comparison) -> list[str]:
    return [
        "#### Results", "",
        "| | base | this branch |", "|---|---|---|",
        f"| best accuracy | {_acc(c.best_before)} | {_acc(c.best_after)} |",
        f"| models selected | {c.selected_before} | {c.selected_after} |", "",
        f"- Newly selected: {_names(c.newly_selected)}",
        f"- No longer selected: {_names(c.no_longer_selected)}",
        f"- Accuracy changed in {c.cells_changed} of {c.cells} cells (largest change "
        f"{c.max_change:.4f}, mean {c.mean_change:+.4f}).",
    ]  # fmt: skip


def job_lines(base: RunResult, c: Comparison | None) -> list[str]:
    head = {j.pipeline: j for j in (c.head_jobs if c else ())}
    lines = ["#### Pipelines", "",
             "| pipeline | base: runtime | base: datums | this branch: state | runtime | "
             "datums processed / skipped / failed |", "|---|---|---|---|---|---|"]
    for b in base.jobs:
        h = head.get(b.pipeline)
        now = ("not re-run", "-", "-") if h is None else (
            md_text(h.state), _secs(h.seconds), f"{h.processed} / {h.skipped} / {h.failed}")
        lines.append(f"| {md_code(b.pipeline)} | {_secs(b.seconds)} | {b.processed} | "
                     f"{' | '.join(now)} |")
    return lines


def failure_lines(jobs: tuple[JobResult, ...], title: str) -> list[str]:
    lines: list[str] = []
    blocked = [j for j in jobs if j.state == UNRUNNABLE]
    if blocked:
        lines += ["", f"{title}: could not run because an upstream job failed: "
                  + ", ".join(md_code(j.pipeline) for j in blocked)]
    for j in (j for j in jobs if j.state not in QUIET):
        lines += ["", f"<details open><summary>{title}: {md_text(j.pipeline)} job "
                  f"{md_text(j.id[:12])} {md_text(j.state)}"
                  f"{': ' + md_text(j.reason) if j.reason else ''}</summary>", "",
                  *md_fence(j.log_tail or ("(no log lines)",)), "</details>"]
    return lines


def render(p: Preview) -> str:
    base = f"{md_code(p.base_ref)} ({md_code(p.base_commit[:12])})"
    head = md_code(p.head_commit[:12]) if p.head_commit else "the working tree"
    lines = [f"### pachsync preview: {head} against {base}", "", headline(p), "",
             f"> {IMAGES_NOTE}"]
    if p.image_bumped:
        lines += ["> The stage code changed: after merge CI builds a new image and bumps every "
                  "tag, so the plan below updates every pipeline with that tag."]
    lines += ["", "#### What the agent will do after merge", "", p.plan_markdown.rstrip(), ""]
    if p.comparison is not None:
        lines += [*metric_lines(p.comparison), ""]
    lines += job_lines(p.base, p.comparison)
    lines += failure_lines(p.comparison.head_jobs if p.comparison else (), "Failed")
    lines += failure_lines(p.base.failed, "Failed in the base run")
    lines += [""] + [f"> warning: {md_text(w)}" for w in p.warnings]
    cached = "taken from the cache" if p.base_cached else "run now, then cached"
    lines += ["", f"<sub>base run {cached} (tree {md_text(p.base_tree[:12])}); full report: "
              "the build's `preview` artifact (preview.html)</sub>"]
    return "\n".join(lines) + "\n"
