"""Reading the report's inputs from a real localpachd: metrics, select's files, commits, collect().

The output repos `test` and `select` are created here by putting files (as the pipelines would
write them), so this runs without any pipeline; the e2e test covers a real pipeline run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.iris import C_VALUES, GAMMA_VALUES

from agent.cluster import outputs
from agent.errors import PachsyncError, UsageError
from agent.report.collect import Options, collect

C, G = C_VALUES, GAMMA_VALUES
BEST = "model_C32.0_G0.063"


def _accuracy(i: int, shift: float) -> float:
    return round(0.5 + (i % 10) / 40 - shift, 4)


def _metrics(shift: float) -> dict[str, bytes]:
    names = [f"model_C{c}_G{g}" for c in C for g in G]
    out = {f"/{n}_metric.txt": f"{_accuracy(i, shift)}\n".encode() for i, n in enumerate(names)}
    out[f"/{BEST}_metric.txt"] = f"{0.99 - shift}".encode()
    return out


def _put(client: Any, repo: str, files: dict[str, bytes]) -> str:
    with client.modify_file_client((repo, "master")) as mfc:
        for path, data in files.items():
            mfc.put_file_from_bytes(path, data)
    info = next(iter(client.inspect_commit((repo, "master"))))
    return str(info.commit.id)


@pytest.fixture
def outputs_repos(pach_client: Any) -> dict[str, str]:
    """test with two commits (old: everything 0.05 lower), select with one; returns the ids."""
    pach_client.create_repo("test")
    pach_client.create_repo("select")
    junk = {
        "/notes.txt": b"not a metric",
        "/model_C99.0_G1.0_metric.txt": b"not a number",
        "/model_C99.0_G2.0_metric.txt": b"nan",
    }
    old = _put(pach_client, "test", {**_metrics(0.05), **junk})
    new = _put(pach_client, "test", _metrics(0.0))
    selected = {
        "rule": {"kind": "tolerance", "tolerance": 0.0},
        "best_accuracy": 0.99,
        "considered": 77,
        "selected": [BEST],
    }
    board = "model,C,gamma,accuracy,selected\n" + f"{BEST},32.0,0.063,0.99,true\n"
    sel = _put(
        pach_client,
        "select",
        {
            "/selected.json": json.dumps(selected).encode(),
            "/leaderboard.csv": board.encode(),
            f"/{BEST}.pkl": b"model bytes",
        },
    )
    return {"old": old, "new": new, "select": sel}


def test_reads_every_metric_file_as_a_number(
    pach_client: Any, outputs_repos: dict[str, str]
) -> None:
    now = outputs.read_metrics(pach_client, "test", "master")
    assert len(now) == 77
    assert now[f"{BEST}_metric.txt"] == 0.99
    assert now["model_C0.031_G0.001_metric.txt"] == 0.5
    before = outputs.read_metrics(pach_client, "test", outputs_repos["old"])
    assert len(before) == 77 and before[f"{BEST}_metric.txt"] == pytest.approx(0.94)


def test_reads_selects_outputs(pach_client: Any, outputs_repos: dict[str, str]) -> None:
    found = outputs.read_select(pach_client, "select", "master")
    assert found.selected is not None and found.selected["selected"] == [BEST]
    assert found.leaderboard_csv is not None and found.leaderboard_csv.count("\n") == 2


def test_commits_resolve_by_id_and_by_distance(
    pach_client: Any, outputs_repos: dict[str, str]
) -> None:
    head = outputs.head_commit(pach_client, "test")
    assert head is not None and head.id == outputs_repos["new"] and head.finished
    assert outputs.resolve_commit(pach_client, "test", "~1") == outputs_repos["old"]
    assert outputs.resolve_commit(pach_client, "test", "master^") == outputs_repos["old"]
    assert outputs.resolve_commit(pach_client, "test", outputs_repos["old"]) == outputs_repos["old"]
    assert [c.id for c in outputs.list_commits(pach_client, "test")] == [
        outputs_repos["new"],
        outputs_repos["old"],
    ]
    with pytest.raises(UsageError, match="has 2 commit"):
        outputs.resolve_commit(pach_client, "test", "~5")
    with pytest.raises(UsageError, match="cannot resolve"):
        outputs.resolve_commit(pach_client, "test", "not a commit!")
    assert outputs.head_commit(pach_client, "no_such_repo") is None


def test_collect_builds_the_report_with_a_comparison(
    pach_client: Any, outputs_repos: dict[str, str]
) -> None:
    data = collect(pach_client, "here", Options(compare="~1"))
    assert len(data.results) == 77 and data.test_commit == outputs_repos["new"]
    assert [r.name for r in data.results if r.selected] == [BEST]
    assert data.best is not None and data.best.name == BEST
    assert data.selection is not None and data.selection.rule == "tolerance: tolerance=0.0"
    assert data.comparison is not None and data.comparison.commit == outputs_repos["old"]
    assert len(data.comparison.results) == 77
    # select's commit is not of test's commit set here (files were put by hand): said so
    assert any("another commit set" in w for w in data.warnings)
    assert data.pipelines == ()


def test_an_empty_cluster_gives_a_report_with_warnings(pach_client: Any, tmp_path: Path) -> None:
    data = collect(pach_client, "here")
    assert data.results == () and data.selection is None
    assert data.warnings == ("repo 'test' has no branch 'master' yet: no outputs to show",)


def test_the_command_writes_the_report(
    localpachd: Any,
    outputs_repos: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agent.cli import main

    out = tmp_path / "rep"
    code = main(
        [
            "report",
            "--pachd",
            localpachd.address,
            "--out",
            str(out),
            "--compare",
            "~1",
            "--format",
            "json",
        ]
    )
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["models"] == 77 and shown["cells"] == 77 and shown["selected"] == [BEST]
    assert shown["rpc_count"] <= 15  # does not grow with the 77 models (one tar read each)
    compare = shown["compare"]
    assert compare["commit"] == outputs_repos["old"] and compare["models"] == 77
    assert (compare["cells_changed"], compare["improved"], compare["worsened"]) == (77, 77, 0)
    assert compare["mean_change"] == pytest.approx(0.05)
    assert (compare["best_before"], compare["best_now"]) == (pytest.approx(0.94), 0.99)
    assert sorted(Path(f).name for f in shown["files"]) == [
        "dag.png",
        "heatmap.png",
        "heatmap_compare.png",
        "heatmap_diff.png",
        "report.html",
    ]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4


def test_all_metrics_come_in_one_rpc(localpachd: Any, outputs_repos: dict[str, str]) -> None:
    from agent.cluster.address import resolve
    from agent.cluster.client import connect

    conn = connect(resolve(localpachd.address))
    try:
        metrics = outputs.read_metrics(conn.client, "test", outputs_repos["new"])
    finally:
        conn.close()
    assert len(metrics) == 77 and metrics[f"{BEST}_metric.txt"] == 0.99
    assert conn.rpc_count == 1, conn.counter.by_method


def test_metrics_are_read_file_by_file_when_the_glob_read_fails(
    pach_client: Any, outputs_repos: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any) -> dict[str, float]:
        raise PachsyncError("GetFileTAR: globs not supported (UNIMPLEMENTED)")

    monkeypatch.setattr(outputs, "_metrics_by_tar", refuse)
    before = outputs.read_metrics(pach_client, "test", outputs_repos["old"])
    assert len(before) == 77 and before[f"{BEST}_metric.txt"] == pytest.approx(0.94)


def test_comparing_with_an_unknown_commit_says_what_to_do(
    pach_client: Any, outputs_repos: dict[str, str]
) -> None:
    missing = "0123456789ab4def0123456789abcdef"
    with pytest.raises(UsageError, match=f"commit {missing} not found in repo 'test'") as info:
        collect(pach_client, "here", Options(compare=missing))
    assert "job id" in info.value.hint


def test_the_command_prints_where_the_report_is(
    localpachd: Any, outputs_repos: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from agent.cli import main

    assert main(["report", "--pachd", localpachd.address, "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"report written: {tmp_path / 'report.html'}"
    assert lines[1].split() == ["models:", "77", "best:", "0.9900", f"({BEST})", "selected:",
                                "1", "pipelines:", "0"]  # fmt: skip
    assert lines[2].startswith("  warning: select@") and "another commit set" in lines[2]
