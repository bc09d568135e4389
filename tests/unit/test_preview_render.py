"""agent.preview's pure parts: compare (cells, selection, head jobs), retag (what bump-image
would write after merge), and preview.md's escaping of every value a pull request controls
(model, pipeline and ref names, job reasons and log lines)."""

from __future__ import annotations

import re

import pytest

from agent.preview.compare import compare
from agent.preview.flow import retag
from agent.preview.markdown import NOTHING_TO_RUN, render
from agent.preview.model import Preview
from agent.preview.run import JobResult, RunResult


def job(pipeline: str, state: str = "SUCCESS", id: str = "b" * 32, **kw: object) -> JobResult:
    fields: dict[str, object] = dict(processed=1, skipped=0, failed=0, total=1, seconds=0.5)
    fields.update(kw)
    return JobResult(pipeline, id, state, **fields)  # type: ignore[arg-type]


BASE = RunResult((job("split"), job("test")), {"m1": 1.0, "m2": 0.9, "m3": 0.8}, ("m1",),
                 1.0, None, ("b" * 32,))


def preview(head: RunResult | None, **kw: object) -> Preview:
    fields: dict[str, object] = dict(base_ref="HEAD~1", base_commit="c" * 40, base_tree="t" * 40,
                                     head_commit="d" * 40, plan_markdown="(plan)", plan={},
                                     base=BASE, head=head,
                                     comparison=compare(BASE, head) if head else None,
                                     base_cached=True, image_bumped=False)
    fields.update(kw)
    return Preview(**fields)  # type: ignore[arg-type]


def test_compare_counts_changed_cells_and_selection() -> None:
    head = RunResult((job("split", id="h" * 32), job("test")), {"m1": 1.0, "m2": 0.95,
                     "m3": 0.7 + 1e-12, "m4": 1.0}, ("m1", "m2"), 1.0, None, ())
    c = compare(BASE, head)
    assert (c.cells, c.cells_changed) == (3, 2)  # m4 is new; 1e-12 is float noise, not 0.1
    assert c.newly_selected == ("m2",) and c.no_longer_selected == ()
    assert c.max_change == pytest.approx(0.1)
    assert [j.pipeline for j in c.head_jobs] == ["split"]  # test's job is the base run's


@pytest.mark.parametrize(("image", "expected"), [
    ("reg.example/iris-stages:0.1.0", "reg.example/iris-stages:preview-x"),
    ("reg.example:5000/iris-stages", "reg.example:5000/iris-stages:preview-x"),
    ("reg.example:5000/a/b:1@sha256:" + "0" * 64, "reg.example:5000/a/b:preview-x"),
    ("python", "python:preview-x"),
])
def test_retag(image: str, expected: str) -> None:
    assert retag(image, "preview-x") == expected


HOSTILE = ["a|b", "<script>x</script>", "##vso[task.setvariable variable=X]y", "`x`", "[l](u)",
           "**b**", "x\n##[error]y"]


@pytest.mark.parametrize("value", HOSTILE)
def test_every_value_from_the_pr_is_escaped(value: str) -> None:
    head = RunResult((job(value, "FAILURE", id="h" * 32, reason=value, log_tail=(value, value)),
                      job("test", "UNRUNNABLE", id="u" * 32)),
                     {"m1": 0.5}, (value,), 0.5, None, ())
    md = render(preview(head, base_ref=value))
    assert "##vso[" not in md.lower() and "##[" not in md  # anywhere, fences included
    prose = re.sub(r"^(`{3,})[^\n]*\n.*?^\1$", "", md, flags=re.M | re.S)  # log lines: fenced
    assert "<script" not in prose and "[l](u)" not in prose and "a|b" not in prose
    assert "**b**" not in prose and "`x`" not in prose
    assert md.count("```") % 2 == 0 and "<details open>" in md
    assert "**A preview job failed:**" in md and "1 downstream job(s) could not run" in md


def test_nothing_to_run_is_one_line_and_no_results() -> None:
    md = render(preview(None))
    assert NOTHING_TO_RUN in md and "#### Results" not in md
    assert "| `split` | 0.5s | 1 | not re-run |" in md
    assert "stage code comes from the checkout" in md
