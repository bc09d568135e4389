"""Builds the self-contained report.html: images as data URIs, tables, and a JSON data island.

Called by `agent.report.render` with the `ReportData` and the PNG files already drawn. Every
value from the cluster is HTML-escaped, and a Content-Security-Policy forbids the page any
network access or script. It opens from a file, a CI artifact or an e-mail attachment alike.
The same facts travel as JSON in `<script type="application/json" id="pachsync-report">` so
scripts and tests can read the page.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.report.model import (
    JobView,
    ModelResult,
    PipelineView,
    ReportData,
    format_param,
    rank_key,
    summarize_change,
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;color:#c9d3df;font-size:13px}
main{padding:16px 32px;max-width:1400px}
section{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{margin:0 0 12px;font-size:18px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:22px} .card span{color:#5b6675;font-size:12px}
img{max-width:100%;height:auto;border:1px solid #eef0f3}
.figs{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.figs figure{margin:0;flex:0 1 900px}
.figs.wide figure{flex:1 1 520px}
aside{flex:1 1 260px;font-size:13px} aside h3{margin:0 0 6px;font-size:15px}
figcaption{font-size:12px;color:#5b6675}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e6e9ee;padding:4px 8px;text-align:left}
th{background:#f0f2f5;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.selected td{background:#ffe9ee;font-weight:600}
.scroll{max-height:520px;overflow:auto}
.state{padding:1px 6px;border-radius:4px;font-size:12px;background:#eee}
.SUCCESS,.p-RUNNING{background:#c8ecc9}.FAILURE,.UNRUNNABLE,.p-CRASHING,.p-FAILURE{background:#f7b4b4}
.p-PAUSED,.p-STANDBY{background:#dfe6f0}
.KILLED{background:#f0c9a8}.RUNNING,.STARTING,.CREATED,.FINISHING{background:#ffe3a3}
.warn{background:#fff6d6;border-color:#f0d77b}
code{font-size:12px}
"""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _state(state: str, prefix: str = "") -> str:
    return f'<span class="state {prefix}{_e(state)}">{_e(state or "—")}</span>'


def _cards(data: ReportData) -> str:
    best = data.best
    chosen = sum(r.selected for r in data.results)
    cards = [
        (str(len(data.results)), "models evaluated"),
        (f"{best.accuracy:.3f}" if best else "—", "best test accuracy"),
        (str(chosen), "models selected"),
        (str(len(data.pipelines)), "pipelines"),
    ]
    body = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for v, k in cards)
    return f'<div class="cards">{body}</div>'


def _figure(png: Path, alt: str, caption: str) -> str:
    return (f'<figure><img src="{data_uri(png)}" alt="{_e(alt)}" data-file="{_e(png.name)}">'
            f"<figcaption>{_e(caption)} · also saved as <code>{_e(png.name)}</code>"
            f"</figcaption></figure>")


def _cv(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _leaderboard(results: Iterable[ModelResult]) -> str:
    """Rank order (select's): test accuracy, then cross-validated accuracy, then C and gamma."""
    rows = []
    for rank, r in enumerate(sorted(results, key=rank_key), 1):
        cls = ' class="selected"' if r.selected else ""
        rows.append(
            f'<tr{cls} data-model="{_e(r.name)}"><td class="num">{rank}</td><td>{_e(r.name)}</td>'
            f'<td class="num">{_e(format_param(r.c))}</td>'
            f'<td class="num">{_e(format_param(r.gamma))}</td>'
            f'<td class="num">{r.accuracy:.4f}</td><td class="num">{_cv(r.cv)}</td>'
            f'<td>{"yes" if r.selected else ""}</td></tr>'
        )
    head = ("<tr><th>#</th><th>model</th><th>C</th><th>gamma</th><th>accuracy</th>"
            '<th title="stratified 5-fold cross-validated accuracy on the training split: '
            'the tie-breaker">cv accuracy</th><th>selected</th></tr>')
    return (f'<div class="scroll"><table id="leaderboard"><thead>{head}</thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _pipelines(pipelines: Iterable[PipelineView]) -> str:
    rows = [
        f'<tr data-pipeline="{_e(p.name)}"><td><b>{_e(p.name)}</b></td>'
        f'<td>{_state(p.state, "p-")}</td>'
        f'<td class="num">{p.version}</td><td>{_e(", ".join(p.inputs))}</td>'
        f"<td><code>{_e(p.image or '—')}</code></td>"
        f'<td><code title="{_e(p.source_commit)}">{_e(p.source_commit[:12] or "—")}</code></td>'
        f"<td>{_e(p.managed_by or '—')}</td></tr>"
        for p in pipelines
    ]
    head = ("<tr><th>pipeline</th><th>state</th><th>version</th><th>inputs</th><th>image</th>"
            "<th>git commit</th><th>managed by</th></tr>")
    return f'<table id="pipelines"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _job_row(pipeline: str, j: JobView) -> str:
    return (
        f'<tr data-pipeline="{_e(pipeline)}" data-job="{_e(j.id)}"><td>{_e(pipeline)}</td>'
        f'<td><code title="{_e(j.id)}">{_e(j.id[:12])}</code></td>'
        f'<td class="num">{j.pipeline_version or "—"}</td><td>{_state(j.state)}</td>'
        f'<td class="num">{j.processed}</td><td class="num">{j.skipped}</td>'
        f'<td class="num">{j.failed}</td><td class="num">{j.total}</td>'
        f"<td>{_e(_when(j.started))}</td><td class=\"num\">{_e(_duration(j.duration_s))}</td></tr>"
    )


def _jobs(pipelines: Iterable[PipelineView]) -> str:
    rows = [_job_row(p.name, j) for p in pipelines for j in p.jobs]
    head = ("<tr><th>pipeline</th><th>job (= output commit)</th><th>pipeline version</th>"
            "<th>state</th><th>processed</th><th>skipped</th><th>failed</th><th>total</th>"
            "<th>started</th><th>duration</th></tr>")
    body = "".join(rows) or '<tr><td colspan="10">no jobs yet</td></tr>'
    table = f'<table id="jobs"><thead>{head}</thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _top(results: tuple[ModelResult, ...], n: int = 12) -> str:
    sel = ' class="selected"'
    rows = "".join(
        f'<tr{sel if r.selected else ""}><td>{_e(r.name)}</td>'
        f'<td class="num">{r.accuracy:.4f}</td><td class="num">{_cv(r.cv)}</td></tr>'
        for r in sorted(results, key=rank_key)[:n]
    )
    more = f"<p>… {len(results) - n} more in the leaderboard below</p>" if len(results) > n else ""
    return (f'<aside><h3>Top {min(n, len(results))}</h3><table><thead><tr><th>model</th>'
            f"<th>accuracy</th><th>cv</th></tr></thead><tbody>{rows}</tbody></table>{more}"
            "</aside>")


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"<code>{_e(n)}</code>" for n in names) or "none"


def _comparison(data: ReportData, images: Mapping[str, Path]) -> str:
    if data.comparison is None or "compare" not in images:
        return ""
    short = data.comparison.commit[:12]
    ch = summarize_change(data.results, data.comparison.results)
    best = "—" if ch.best_before is None or ch.best_now is None else \
        f"{ch.best_before:.4f} → {ch.best_now:.4f}"  # fmt: skip
    facts = [
        f"{ch.changed} of {ch.common} models changed accuracy ({ch.improved} better, "
        f"{ch.worsened} worse; mean change {ch.mean_change:+.4f})",
        f"best accuracy {best}",
        f"newly selected: {_names(ch.newly_selected)}",
        f"no longer selected: {_names(ch.no_longer_selected)}",
    ]
    if ch.added or ch.removed:
        facts.append(f"models added: {_names(ch.added)}; removed: {_names(ch.removed)}")
    items = "".join(f"<li>{f}</li>" for f in facts)  # parts escaped above
    figs = (_figure(images["compare"], "earlier accuracy heatmap", f"at test commit {short}")
            + _figure(images["diff"], "accuracy difference", f"now minus {short}"))
    return (f'<section id="compare"><h2>Compared with test@<code>{_e(short)}</code></h2>'
            f'<ul>{items}</ul><div class="figs wide">{figs}</div></section>')


def build_page(data: ReportData, images: Mapping[str, Path], summary: Mapping[str, Any]) -> str:
    """The whole HTML document. `images` maps heatmap/dag/compare/diff/cv to the PNG files."""
    sel = data.selection
    rule = f" Selection rule: <code>{_e(sel.rule)}</code>." if sel and sel.rule else ""
    heat = _figure(images["heatmap"], "accuracy heatmap", "test accuracy over C x gamma")
    cv = (_figure(images["cv"], "cross-validated accuracy heatmap",
                  "cross-validated accuracy on the training split: the tie-breaker")
          if "cv" in images else "")  # fmt: skip
    ties = (" Models tied on test accuracy are ranked by their stratified 5-fold cross-validated "
            "accuracy on the training split (second heatmap)." if cv else "")  # fmt: skip
    warnings = "".join(f"<li>{_e(w)}</li>" for w in data.warnings)
    warn = (f'<section class="warn"><h2>Warnings</h2><ul>{warnings}</ul></section>'
            if warnings else "")
    dag = _figure(images["dag"], "pipeline graph", "repos and pipelines; arrows are inputs")
    blob = json.dumps(summary, sort_keys=True).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>pachsync report — hyperparameter search</title><style>{CSS}</style></head>
<body><header><h1>pachsync report — iris hyperparameter search</h1>
<p>generated {_e(_when(data.generated_at))} · pachd {_e(data.pachd or "—")} · test commit
<code>{_e(data.test_commit or "—")}</code></p></header><main>
{_cards(data)}{warn}
<section id="search"><h2>Accuracy over C × gamma</h2>
<p>Each cell is one model's accuracy on the held-out test set; outlined cells are the models
<code>select</code> kept.{rule}{ties}</p>
<div class="figs">{heat}{_top(data.results)}</div><div class="figs">{cv}</div></section>
{_comparison(data, images)}
<section id="graph"><h2>Pipeline graph</h2>{dag}</section>
<section><h2>Pipelines</h2>{_pipelines(data.pipelines)}</section>
<section><h2>Recent jobs</h2>{_jobs(data.pipelines)}</section>
<section><h2>Leaderboard</h2>{_leaderboard(data.results)}</section>
</main><script type="application/json" id="pachsync-report">{blob}</script></body></html>
"""
