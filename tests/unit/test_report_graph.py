"""The report's pipeline graph: nodes and edges from pipelines, and the layered layout."""

from __future__ import annotations

from agent.report.graph import DUMMY, Graph, build_graph, job_counts, layout, runs
from agent.report.model import JobView, PipelineView

IRIS = (
    PipelineView("split", "RUNNING", ("raw_data",)),
    PipelineView(
        "model",
        "RUNNING",
        ("split", "parameters"),
        jobs=(JobView("j2", "SUCCESS", 70, 7, 0, total=77), JobView("j1", "FAILURE")),
    ),
    PipelineView("test", "RUNNING", ("split", "model")),
    PipelineView("select", "PAUSED", ("test", "model")),
)


def test_graph_has_repos_and_pipelines_and_input_edges() -> None:
    graph = build_graph(IRIS, repos=("raw_data", "parameters"))
    kinds = {n.name: n.kind for n in graph.nodes}
    assert kinds == {
        "raw_data": "repo",
        "parameters": "repo",
        "split": "pipeline",
        "model": "pipeline",
        "test": "pipeline",
        "select": "pipeline",
    }
    assert set(graph.edges) == {
        ("raw_data", "split"),
        ("split", "model"),
        ("parameters", "model"),
        ("split", "test"),
        ("model", "test"),
        ("test", "select"),
        ("model", "select"),
    }
    assert len(graph.edges) == 7


def test_nodes_carry_state_and_the_last_jobs_counts() -> None:
    graph = build_graph(IRIS)
    model = graph.node("model")
    assert (model.state, model.job_state) == ("RUNNING", "SUCCESS")
    assert model.detail == "70 processed · 7 skipped · 0 failed"
    assert graph.node("select").detail == "no jobs yet" == job_counts(IRIS[3])
    assert graph.node("raw_data").kind == "repo"  # inferred from inputs when not declared


def test_layout_layers_follow_the_data_flow() -> None:
    lay = layout(build_graph(IRIS))
    real = {n: lay.layer[n] for n in lay.layer if not n.startswith(DUMMY)}
    # input repos sit right before their first consumer: parameters beside split, not at 0
    assert real == {"raw_data": 0, "split": 1, "parameters": 1, "model": 2, "test": 3, "select": 4}
    assert lay.layers == 5


def test_long_edges_get_their_own_row_in_every_layer_they_cross() -> None:
    lay = layout(build_graph(IRIS))
    assert len(lay.routes[("split", "test")]) == 1  # crosses the model layer
    assert len(lay.routes[("model", "select")]) == 1  # crosses the test layer
    assert lay.routes[("split", "model")] == ()
    positions = [(lay.layer[n], lay.slot[n]) for n in lay.layer]
    assert len(positions) == len(set(positions)), "two nodes share a position"
    assert lay.height == 2


def test_layout_of_an_empty_graph_is_empty() -> None:
    lay = layout(Graph((), ()))
    assert (lay.layers, lay.height, lay.routes) == (0, 0, {})


def test_pipeline_nodes_say_what_they_run() -> None:
    p = PipelineView("model", "RUNNING", ("split",), "acr.io/team/iris-stages:abc",
                     "0123456789abcdef")  # fmt: skip
    assert runs(p) == "iris-stages:abc · git 0123456"
    assert build_graph((p,)).node("model").runs == "iris-stages:abc · git 0123456"
    assert runs(PipelineView("x", "RUNNING", ())) == "not from git"
