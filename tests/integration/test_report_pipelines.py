"""The report's view of real pipelines on localpachd: inputs as edges, jobs with datum counts,
the agent's annotations, and the commits a pipeline writes (origin AUTO) for --compare.

Two tiny shell pipelines (`count` reads `raw`, `total` reads `count` and `raw`) stand in for
the iris DAG so this stays fast; the e2e test runs the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.wait import wait_for
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cluster import outputs
from agent.report.collect import Options, collect
from agent.report.graph import build_graph
from agent.report.render import write_report

SHA = "0123456789abcdef0123456789abcdef01234567"
TERMINAL = {"SUCCESS", "FAILURE", "KILLED", "UNRUNNABLE"}


def _pipeline(client: Any, name: str, cmd: str, inputs: pps_pb2.Input) -> None:
    client.create_pipeline(
        name,
        transform=pps_pb2.Transform(image="example.io/tools:1.0", cmd=["sh", "-c", cmd]),
        input=inputs,
        metadata=pps_pb2.Metadata(annotations={"pachsync.io/source-commit": SHA,
                                               "pachsync.io/managed-by": "test-source"}),
    )  # fmt: skip


def _wait(client: Any, names: list[str], jobs: int, timeout: float = 120.0) -> None:
    """Until every pipeline has `jobs` jobs, all finished."""
    def finished() -> bool:
        done = [outputs.recent_jobs(client, n, limit=jobs + 1) for n in names]
        return all(len(js) >= jobs and all(j.state in TERMINAL for j in js) for js in done)

    wait_for(finished, f"pipelines {names} to finish {jobs} job(s)", timeout, interval=0.3)


@pytest.fixture
def dag(pach_client: Any) -> Any:
    pach_client.create_repo("raw")
    with pach_client.modify_file_client(("raw", "master")) as mfc:
        for i in range(3):
            mfc.put_file_from_bytes(f"/f{i}", b"x" * (i + 1))
    pfs = pps_pb2.PFSInput
    _pipeline(pach_client, "count", "wc -c < $raw > /pfs/out/$(basename $raw)",
              pps_pb2.Input(pfs=pfs(repo="raw", glob="/*")))  # fmt: skip
    _pipeline(pach_client, "total", "cat /pfs/count/* > /pfs/out/all; ls /pfs/raw > /pfs/out/n",
              pps_pb2.Input(cross=[pps_pb2.Input(pfs=pfs(repo="count", glob="/")),
                                   pps_pb2.Input(pfs=pfs(repo="raw", glob="/"))]))  # fmt: skip
    _wait(pach_client, ["count", "total"], jobs=1)
    with pach_client.modify_file_client(("raw", "master")) as mfc:
        mfc.put_file_from_bytes("/f3", b"yyyy")
    _wait(pach_client, ["count", "total"], jobs=2)
    return pach_client


def test_pipelines_jobs_and_annotations_are_read(dag: Any, tmp_path: Path) -> None:
    data = collect(dag, "here")
    views = {p.name: p for p in data.pipelines}
    assert set(views) == {"count", "total"}
    assert views["count"].inputs == ("raw",)
    assert set(views["total"].inputs) == {"count", "raw"}
    assert data.repos == ("raw",)
    count = views["count"]
    assert (count.image, count.source_commit, count.managed_by) == (
        "example.io/tools:1.0",
        SHA,
        "test-source",
    )
    assert count.state == "RUNNING"
    newest, first = count.jobs[0], count.jobs[1]
    assert len(count.jobs) == 2
    assert (first.state, first.processed, first.skipped, first.total) == ("SUCCESS", 3, 0, 3)
    # the second job only runs the new file: the three old datums are skipped
    assert (newest.state, newest.processed, newest.skipped, newest.total) == ("SUCCESS", 1, 3, 4)
    assert newest.duration_s is not None and newest.duration_s >= 0
    graph = build_graph(data.pipelines, data.repos)
    assert set(graph.edges) == {("raw", "count"), ("count", "total"), ("raw", "total")}
    assert graph.node("count").detail == "1 processed · 3 skipped · 0 failed"
    files = write_report(data, tmp_path)
    assert 'data-pipeline="count"' in files.html.read_text()
    # no test/select repos in this cluster: said on the page, not a failure
    assert any("repo 'test'" in w for w in data.warnings)


def test_commits_written_by_pipelines_are_listed_newest_first(dag: Any) -> None:
    commits = outputs.list_commits(dag, "count")
    jobs = outputs.recent_jobs(dag, "count")
    assert [c.id for c in commits[:2]] == [j.id for j in jobs[:2]]
    assert all(c.finished for c in commits)
    assert outputs.resolve_commit(dag, "count", "~1") == jobs[1].id
    assert [j.id for j in outputs.recent_jobs(dag, "count", limit=1)] == [jobs[0].id]


def test_a_failed_job_is_not_shown_as_the_results(pach_client: Any) -> None:
    """The output commit of a failed job carries an error: the report falls back, and says so."""
    pach_client.create_repo("raw")
    with pach_client.modify_file_client(("raw", "master")) as mfc:
        mfc.put_file_from_bytes("/f0", b"x")
    cmd = ("if [ -e /pfs/raw/f1 ]; then exit 1; fi; "
           "echo 0.75 > /pfs/out/model_C1.0_G2.0_metric.txt")  # fmt: skip
    _pipeline(pach_client, "scores", cmd, pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="raw", glob="/")))
    _wait(pach_client, ["scores"], jobs=1)
    with pach_client.modify_file_client(("raw", "master")) as mfc:
        mfc.put_file_from_bytes("/f1", b"breaks it")
    _wait(pach_client, ["scores"], jobs=2)
    newest, good = outputs.recent_jobs(pach_client, "scores")[:2]
    assert (newest.state, good.state) == ("FAILURE", "SUCCESS")
    data = collect(pach_client, "here", Options(test_repo="scores", select_repo="scores"))
    assert data.test_commit == good.id
    assert [(r.c, r.gamma, r.accuracy) for r in data.results] == [(1.0, 2.0, 0.75)]
    assert any(f"(commit {newest.id}) failed" in w and good.id in w for w in data.warnings)
