"""The demo writes its report through agent.report directly and names the page exactly once.

(The full demo run, 77 models, is covered by tests/e2e; here the report step runs against a
real, empty localpachd, which is enough to see what the demo prints.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.commands.demo import _report


def test_report_path_printed_once(localpachd: Any, tmp_path: Path, capsys: Any) -> None:
    _report(localpachd.address, tmp_path / "report")
    out = capsys.readouterr()
    html = tmp_path / "report" / "report.html"
    assert html.is_file()
    assert out.out.count("report.html") == 1, out.out
    assert out.out.strip() == f"report: {html}"


def test_report_failure_is_skipped_with_one_line(tmp_path: Path, capsys: Any,
                                                 monkeypatch: Any) -> None:
    monkeypatch.setenv("PACHSYNC_RPC_TIMEOUT", "5")
    _report("127.0.0.1:1", tmp_path / "report")
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("report skipped: ") and out.err.count("\n") == 1, out.err
