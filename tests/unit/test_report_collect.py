"""The pure half of agent.report.collect: live pipeline specs and select's files -> report model."""

from __future__ import annotations

from agent.cluster.model import LivePipeline
from agent.cluster.outputs import JobRecord, SelectOutputs
from agent.report.collect import format_rule, input_repos, pipeline_view, selection_of

MODEL_SPEC = {
    "transform": {"image": "acr.io/iris-stages:abc", "cmd": ["python3"]},
    "metadata": {
        "annotations": {
            "pachsync.io/source-commit": "f00d" * 10,
            "pachsync.io/managed-by": "repo@main:specs",
        }
    },
    "input": {
        "cross": [
            {"pfs": {"repo": "split", "glob": "/train.csv"}},
            {"pfs": {"repo": "parameters", "name": "c", "glob": "/c/*"}},
            {"pfs": {"repo": "parameters", "name": "gamma", "glob": "/g/*"}},
        ]
    },
}


def test_input_repos_walk_every_combinator_in_order() -> None:
    tree = {
        "union": [
            {"pfs": {"repo": "a"}},
            {"join": [{"pfs": {"repo": "b"}}, {"group": [{"pfs": {"repo": "c"}}]}]},
        ]
    }
    assert list(input_repos(tree)) == ["a", "b", "c"]
    assert list(input_repos(None)) == []


def test_pipeline_view_reads_inputs_image_annotations_and_jobs() -> None:
    live = LivePipeline("model", "default", MODEL_SPEC, version=3, state="PIPELINE_RUNNING")
    job = JobRecord("j" * 32, "SUCCESS", 70, 7, 0, 0, 77, 3, 10.0, 11.0, 31.5)
    view = pipeline_view(live, (job,))
    assert view.inputs == ("split", "parameters")  # parameters read twice, one edge
    assert (view.state, view.version, view.image) == ("RUNNING", 3, "acr.io/iris-stages:abc")
    assert view.source_commit == "f00d" * 10 and view.managed_by == "repo@main:specs"
    assert view.last_job is not None and view.last_job.duration_s == 20.5
    assert (view.last_job.processed, view.last_job.skipped, view.last_job.total) == (70, 7, 77)


def test_unmanaged_pipelines_show_no_commit() -> None:
    view = pipeline_view(LivePipeline("x", "default", {"input": {"pfs": {"repo": "r"}}}), ())
    assert (view.source_commit, view.managed_by, view.image, view.jobs) == ("", "", "", ())


def test_selection_comes_from_selected_json_else_the_leaderboard() -> None:
    doc = {
        "rule": {"kind": "threshold", "max_error": 0.05},
        "best_accuracy": 0.97,
        "selected": ["model_C2.0_G1.0", "model_C8.0_G1.0"],
    }
    sel = selection_of(SelectOutputs("c", doc, None))
    assert sel is not None
    assert sel.names == ("model_C2.0_G1.0", "model_C8.0_G1.0") and sel.best_accuracy == 0.97
    assert sel.rule == "threshold: max_error=0.05"
    board = "model,C,gamma,accuracy,selected\nm1,2.0,1.0,0.9,true\nm2,8.0,1.0,0.8,false\n"
    from_board = selection_of(SelectOutputs("c", None, board))
    assert from_board is not None and from_board.names == ("m1",)
    assert selection_of(SelectOutputs("c", None, None)) is None


def test_rules_read_naturally() -> None:
    assert format_rule({"kind": "tolerance", "tolerance": 0.0}) == "tolerance: tolerance=0.0"
    assert format_rule(None) == "" and format_rule("best") == "best"
