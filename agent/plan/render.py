"""PURE renderers of a Plan: text for terminals, JSON for scripts, Markdown for PR comments.

Called by the `plan` and `apply` commands and by CI (`pachsync plan --format markdown`). The
Markdown form has a summary table, the field-level diffs and the pipeline DAG as a Mermaid graph.

Names, reasons, diff values, warnings and the source id come from git or from the cluster, so
each form shows them through `agent.util.safetext`: every text line is `one_line`, JSON is
`json_dumps`, and Markdown escapes each value for its place (table cell, code, code block,
Mermaid label), so no value can print a CI logging command or break the PR comment.
"""

from __future__ import annotations

import json
from typing import Any

from agent.plan import datarender
from agent.plan.data import DataPlan
from agent.plan.model import (
    ADOPT,
    CONFLICT,
    CREATE,
    DELETE,
    DRIFT,
    ORPHAN,
    UNCHANGED,
    UNMANAGED,
    UPDATE,
    PipelineChange,
    Plan,
)
from agent.plan.normalize import ANN_ADOPT
from agent.util.safetext import (
    html_code,
    json_dumps,
    md_code,
    md_fence,
    md_text,
    mermaid_label,
    one_line,
)

SYMBOLS = {CREATE: "+", UPDATE: "~", DELETE: "-", DRIFT: "!", UNCHANGED: "=", ORPHAN: "?",
           UNMANAGED: ".", CONFLICT: "x", ADOPT: "^"}
WITH_DIFFS = frozenset({UPDATE, DRIFT, ADOPT})  # actions whose field diffs are shown
_MAX_VALUE = 120


def _short(value: Any) -> str:
    text = "(absent)" if value is None else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def short_commit(commit: str) -> str:
    """`<12 hex>` (plus `+dirty` for a work tree with local changes)."""
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def describe(c: PipelineChange) -> str:
    """One phrase for what happens to a pipeline, e.g. `update with reprocess (77 datums)`."""
    if c.blocked_by:
        return f"{c.action} skipped (reads {', '.join(c.blocked_by)})"
    if c.action == ADOPT:
        how = "with reprocess" + ("" if c.datums is None else f" ({c.datums} datums)") \
            if c.reprocess else "without reprocess"
        return f"adopt {how}" + ("" if c.will_apply else " (needs --adopt)")
    if c.action in (UPDATE, DRIFT):
        what = "update" if c.action == UPDATE else "drift"
        if c.action == DRIFT and not c.will_apply:
            return "drift (report only)"
        if c.reprocess:
            n = "" if c.datums is None else f" ({c.datums} datums)"
            return f"{what}: revert with reprocess{n}" if c.action == DRIFT else f"{what} with reprocess{n}"  # noqa: E501
        return f"{what}: revert without reprocess" if c.action == DRIFT else f"{what} without reprocess"  # noqa: E501
    return c.action


def _reprocessing(p: Plan, action: str) -> str:
    """`k with reprocess, d datums to re-run` among the changes of `action` this plan applies."""
    reproc = [c for c in p.pipelines if c.action == action and c.will_apply and c.reprocess]
    return f"{len(reproc)} with reprocess, {sum(c.datums or 0 for c in reproc)} datums to re-run"


def summary(p: Plan) -> str:
    n = {a: sum(1 for c in p.pipelines if c.action == a) for a in SYMBOLS}
    reverts = sum(1 for c in p.pipelines if c.action == DRIFT and c.will_apply)
    drifted = f"{n[DRIFT]} drifted" + (
        f" ({reverts} to revert, {_reprocessing(p, DRIFT)})" if reverts else "")
    parts = [f"{len(p.repos_to_create)} repo(s) to create", f"{n[CREATE]} pipeline(s) to create",
             f"{n[UPDATE]} to update ({_reprocessing(p, UPDATE)})",
             f"{n[DELETE]} to delete", drifted, f"{n[UNCHANGED]} unchanged"]
    if n[ADOPT]:
        left = sum(1 for c in p.pipelines if c.action == ADOPT and not c.will_apply)
        parts.append(f"{n[ADOPT]} to adopt (" + (f"{left} left alone: need --adopt or "
                     f"{ANN_ADOPT}; " if left else "") + f"{_reprocessing(p, ADOPT)})")
    blocked = sum(1 for c in p.pipelines if c.blocked_by)
    if blocked:
        parts.append(f"{blocked} skipped (reading a conflict)")
    if n[ORPHAN]:
        parts.append(f"{n[ORPHAN]} orphaned (need --prune)")
    if n[UNMANAGED]:
        parts.append(f"{n[UNMANAGED]} unmanaged")
    if n[CONFLICT]:
        parts.append(f"{n[CONFLICT]} in conflict")
    return ", ".join(parts)


def render_text(p: Plan, verbose: bool = True, data: DataPlan | None = None) -> str:
    commit = short_commit(p.policy.commit) or "(no git commit)"
    lines = [f"Plan for {p.policy.source_id} at {commit}"]
    for r in p.repos_to_create:
        lines.append(f"  + repo {r.name}: create (input repo)")
    width = max((len(c.name) for c in p.pipelines), default=0)
    for c in p.pipelines:
        extra = c.reason
        if c.reprocess_reason and c.action in WITH_DIFFS:
            extra += f"; {c.reprocess_reason}"
        lines.append(f"  {SYMBOLS[c.action]} {c.name.ljust(width)}  {describe(c)}"
                     + (f"  ({extra})" if extra else ""))
        if verbose and c.action in WITH_DIFFS:
            for d in c.diffs:
                lines.append(f"      {d.path}: {_short(d.before)} -> {_short(d.after)}")
    lines += [f"warning: {w}" for w in p.warnings]
    lines += [f"conflict: {c}" for c in p.conflicts]
    lines.append("Summary: " + summary(p))
    lines += datarender.text_lines(data) if data is not None else []
    return "\n".join(one_line(line) for line in lines)


def to_dict(p: Plan, data: DataPlan | None = None) -> dict[str, Any]:
    """The plan as JSON data; with declared data, `data` (agent.plan.datarender.to_dict) and
    `in_sync` false when data is to be written too."""
    out = _to_dict(p)
    if data is not None and data.declared:
        out["data"] = datarender.to_dict(data)
        out["in_sync"] = out["in_sync"] and not data.has_changes
    return out


def _to_dict(p: Plan) -> dict[str, Any]:
    return {
        "source_id": p.policy.source_id,
        "commit": p.policy.commit,
        "in_sync": not p.has_changes,
        "summary": summary(p),
        "counts": p.counts(),
        "repos_to_create": [r.name for r in p.repos_to_create],
        "pipelines": [
            {"name": c.name, "action": str(c.action), "label": c.label, "reason": c.reason,
             "reprocess": c.reprocess, "reprocess_reason": c.reprocess_reason,
             "datums": c.datums, "file": c.file, "inputs": list(c.inputs),
             "will_apply": c.will_apply, "managed_by": c.managed_by,
             "source_commit": c.source_commit, "blocked_by": list(c.blocked_by),
             "diffs": [{"path": d.path, "live": d.before, "git": d.after} for d in c.diffs]
             if c.action in WITH_DIFFS else []}
            for c in p.pipelines
        ],
        "delete_order": list(p.delete_order),
        "warnings": list(p.warnings),
        "conflicts": list(p.conflicts),
    }


def render_json(p: Plan, data: DataPlan | None = None) -> str:
    return json_dumps(to_dict(p, data), indent=2, sort_keys=True, default=str)


def _mermaid_id(name: str) -> str:
    return "n_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def mermaid(p: Plan) -> list[str]:
    """The DAG: input repos as cylinders, pipelines coloured by action."""
    lines = ["```mermaid", "graph LR"]
    pipes = {c.name: c for c in p.pipelines}
    sources = sorted({up for up, _ in p.edges if up not in pipes} | {r.name for r in p.repos})
    lines += [f"  {_mermaid_id(r)}[({mermaid_label(r)})]" for r in sources]
    for c in p.pipelines:
        label = f"{mermaid_label(c.name)}<br/>{describe(c)}"
        lines.append(f'  {_mermaid_id(c.name)}["{label}"]:::{c.action}')
    lines += [f"  {_mermaid_id(a)} --> {_mermaid_id(b)}" for a, b in p.edges]
    styles = {CREATE: "#d4f7d4", UPDATE: "#fff2b3", DELETE: "#f7d4d4", DRIFT: "#ffd8a8",
              UNCHANGED: "#eeeeee", ORPHAN: "#e0e0ff", UNMANAGED: "#ffffff", CONFLICT: "#ff9999",
              ADOPT: "#d4e8ff"}
    lines += [f"  classDef {a} fill:{col}" for a, col in styles.items()]
    lines.append("```")
    return lines


def render_markdown(p: Plan, data: DataPlan | None = None) -> str:
    commit = short_commit(p.policy.commit) or "no git commit"
    lines = [f"### pachsync plan for {md_code(commit)}", "", f"**{md_text(summary(p))}**", ""]
    lines += ["| pipeline | action | reprocess | datums re-run | why |", "|---|---|---|---|---|"]
    for c in p.pipelines:
        rep = "yes" if c.reprocess and c.action in WITH_DIFFS else ""
        datums = "" if not rep or c.datums is None else str(c.datums)
        why = md_text(c.reason + (f"; {c.reprocess_reason}" if rep else ""))
        lines.append(f"| {md_code(c.name)} | {SYMBOLS[c.action]} {describe(c)} | {rep} | {datums} | {why} |")  # noqa: E501
    if p.repos_to_create:
        lines += ["", "Input repos to create: " + ", ".join(md_code(r.name) for r in p.repos_to_create)]  # noqa: E501
    for c in p.pipelines:
        if c.action in WITH_DIFFS and c.diffs:
            lines += ["", f"<details><summary>{html_code(c.name)}: {len(c.diffs)} field(s) "
                      f"changed</summary>", ""]
            changes = [f"{sign} {d.path}: {_short(value)}" for d in c.diffs
                       for sign, value in (("-", d.before), ("+", d.after))]
            lines += [*md_fence(changes, "diff"), "</details>"]
    lines += [""] + [f"> warning: {md_text(w)}" for w in p.warnings]
    lines += [f"> conflict: {md_text(c)}" for c in p.conflicts]
    lines += datarender.markdown_lines(data) if data is not None else []
    lines += ["", "#### Pipeline DAG", ""] + mermaid(p)
    return "\n".join(lines) + "\n"


def render(p: Plan, fmt: str = "text", data: DataPlan | None = None) -> str:
    """The plan in `fmt` (text, json, markdown), with the data section when `data` is given."""
    if fmt == "json":
        return render_json(p, data)
    if fmt == "markdown":
        return render_markdown(p, data)
    return render_text(p, data=data)
