"""PURE renderers of a DataPlan (data declared in git): the data section of `pachsync plan` and
`apply` output in text, JSON and Markdown.

Called by `agent.plan.render` (which appends these sections to the pipelines' plan). Paths and
sources come from git or the cluster, so every text line goes through `one_line` and Markdown
values through `md_text`/`md_code`, as in `agent.plan.render`.
"""

from __future__ import annotations

from typing import Any

from agent.plan.data import DELETE, SYMBOLS, WRITES, DataPlan, RepoDataPlan, Rerun
from agent.util.safetext import html_code, md_code, md_text

MAX_FILES_SHOWN = 20  # per repo in text and Markdown; JSON lists them all


def repo_counts(r: RepoDataPlan) -> str:
    """`1 to add, 2 to change, 1 to delete, 17 unchanged` (only the non-zero ones, and
    unchanged always)."""
    parts = [f"{n} to {what}" for what, n in (
        ("add", r.count("add")), ("change", r.count("change", "replace")),
        ("restore", r.count("restore")), ("delete", r.count(DELETE))) if n]
    return ", ".join(parts + [f"{r.unchanged} unchanged"])


def rerun_text(x: Rerun) -> str:
    if not x.direct:
        return x.pipeline
    n = "" if x.datums is None else f"{x.datums} datum(s), "
    return f"{x.pipeline} ({n}via {', '.join(x.inputs)})"


def reruns_line(d: DataPlan) -> str:
    direct = [rerun_text(x) for x in d.reruns if x.direct]
    down = [x.pipeline for x in d.reruns if not x.direct]
    if not direct:
        return "no pipeline reads the changed files"
    return ", ".join(direct) + (f"; then downstream: {', '.join(down)}" if down else "")


def summary(d: DataPlan) -> str:
    writes = [r for r in d.repos if r.write is not None]
    if not writes:
        return f"{len(d.repos)} repo(s) with declared data, all in sync"
    files = sum(len(r.changes) for r in writes)
    return (f"{len(writes)} repo(s) to write ({', '.join(r.name for r in writes)}), "
            f"{files} file(s) changed")


def text_lines(d: DataPlan) -> list[str]:
    """The data section of `plan`/`apply` text output (empty when no repo declares data)."""
    if not d.declared:
        return []
    lines = ["Data declared in git (one commit per changed repo):"]
    for r in d.repos:
        mark = "~" if r.write is not None else "="
        lines.append(f"  {mark} repo {r.name}: {repo_counts(r)}"
                     + (" (finishes an interrupted write)" if r.write and r.write.into and
                        not r.changes else ""))
        for c in r.changes[:MAX_FILES_SHOWN]:
            source = f"  ({c.source}, {c.size} bytes)" if c.action in WRITES else ""
            lines.append(f"      {SYMBOLS[c.action]} {c.path}  {c.action}{source}")
        if len(r.changes) > MAX_FILES_SHOWN:
            lines.append(f"      ... and {len(r.changes) - MAX_FILES_SHOWN} more")
    if d.has_changes:
        lines.append(f"  re-runs: {reruns_line(d)}")
    lines += [f"warning: {w}" for w in d.warnings]
    lines.append("Data summary: " + summary(d))
    return lines


def to_dict(d: DataPlan) -> dict[str, Any]:
    return {
        "in_sync": not d.has_changes,
        "summary": summary(d),
        "repos": [{
            "repo": r.name, "branch": r.branch, "write": r.write is not None,
            "unchanged": r.unchanged, "kept": list(r.kept), "foreign": list(r.foreign),
            "changes": [{"path": c.path, "action": c.action, "source": c.source,
                         "size": c.size} for c in r.changes],
        } for r in d.repos],
        "reruns": [{"pipeline": x.pipeline, "direct": x.direct, "datums": x.datums,
                    "inputs": list(x.inputs)} for x in d.reruns],
        "warnings": list(d.warnings),
    }


def markdown_lines(d: DataPlan) -> list[str]:
    if not d.declared:
        return []
    lines = ["", "#### Data declared in git", "", f"**{md_text(summary(d))}**", "",
             "| repo | files |", "|---|---|"]
    lines += [f"| {md_code(r.name)} | {md_text(repo_counts(r))} |" for r in d.repos]
    if d.has_changes:
        lines += ["", f"Re-runs: {md_text(reruns_line(d))}"]
    for r in d.repos:
        if not r.changes:
            continue
        lines += ["", f"<details><summary>{html_code(r.name)}: {len(r.changes)} file(s)"
                  "</summary>", ""]
        lines += [f"- {SYMBOLS[c.action]} {md_code(c.path)} {c.action}"
                  + (f" from {md_code(c.source)}" if c.source else "")
                  for c in r.changes[:MAX_FILES_SHOWN]]
        if len(r.changes) > MAX_FILES_SHOWN:
            lines.append(f"- ... and {len(r.changes) - MAX_FILES_SHOWN} more")
        lines.append("</details>")
    lines += [""] + [f"> warning: {md_text(w)}" for w in d.warnings]
    return lines
