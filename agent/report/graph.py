"""The pipeline DAG as the report draws it, and a layered layout computed from it. Pure.

Nodes are input repos and pipelines (a pipeline stands for its output repo too, as in Pachyderm's
own DAG view); an edge `a -> b` means pipeline `b` reads `a`. The layout is the classic layered
(Sugiyama-style) one, small enough to write here rather than shelling out to graphviz: layer =
longest path from a source, order within a layer by the barycenter of the neighbours, a few sweeps.
`agent.report.dag` draws it; tests compare `nodes`/`edges` with the specs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.report.model import PipelineView


@dataclass(frozen=True)
class Node:
    name: str
    kind: str  # "repo" | "pipeline"
    state: str = ""  # pipeline state; "" for repos
    detail: str = ""  # e.g. the last job's datum counts
    job_state: str = ""  # the last job's state; "" when none
    runs: str = ""  # what it runs: image tag and git commit, e.g. "iris-stages:0.1.0 @ 9585c1c"


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]  # (upstream, downstream), sorted, unique

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def job_counts(pipeline: PipelineView) -> str:
    """`77 processed · 0 skipped · 0 failed` for the last job, or `no jobs yet`."""
    job = pipeline.last_job
    if job is None:
        return "no jobs yet"
    return f"{job.processed} processed · {job.skipped} skipped · {job.failed} failed"


def runs(pipeline: PipelineView) -> str:
    """`iris-stages:0.1.0 @ 9585c1c`: the image without its registry, and the git commit."""
    image = pipeline.image.rsplit("/", 1)[-1]
    commit = f"git {pipeline.source_commit[:7]}" if pipeline.source_commit else "not from git"
    return f"{image} · {commit}" if image else commit


def build_graph(pipelines: Iterable[PipelineView], repos: Iterable[str] = ()) -> Graph:
    """The graph of these pipelines; input repos that are not pipelines become repo nodes."""
    pipelines = tuple(pipelines)
    names = {p.name for p in pipelines}
    repo_names = set(repos) | {i for p in pipelines for i in p.inputs if i not in names}
    nodes = [Node(r, "repo") for r in sorted(repo_names - names)]
    nodes += [
        Node(p.name, "pipeline", p.state, job_counts(p), p.last_job.state if p.last_job else "",
             runs(p))
        for p in pipelines
    ]  # fmt: skip
    edges = sorted({(i, p.name) for p in pipelines for i in p.inputs})
    return Graph(tuple(nodes), tuple(edges))


DUMMY = "\x00"  # prefix of the invisible nodes that carry long edges through a layer


@dataclass(frozen=True)
class Layout:
    """Node positions: `layer` (column, 0 = sources) and `slot` (row within the layer).

    Edges spanning several layers pass through invisible dummy nodes (names start with DUMMY),
    one per layer crossed, so they get their own row and never run through a box: `routes`
    lists them per edge, upstream first.
    """

    layer: dict[str, int]
    slot: dict[str, float]
    routes: dict[tuple[str, str], tuple[str, ...]]

    @property
    def layers(self) -> int:
        return 1 + max(self.layer.values(), default=-1)

    @property
    def height(self) -> int:
        """Number of rows of the tallest layer (dummies included)."""
        counts: dict[int, int] = {}
        for layer in self.layer.values():
            counts[layer] = counts.get(layer, 0) + 1
        return max(counts.values(), default=0)


def _layers(graph: Graph) -> dict[str, int]:
    """Longest path from a source; then each source moves right, next to its first consumer."""
    ups: dict[str, list[str]] = {n.name: [] for n in graph.nodes}
    downs: dict[str, list[str]] = {n.name: [] for n in graph.nodes}
    for a, b in graph.edges:
        ups.setdefault(b, []).append(a)
        ups.setdefault(a, [])
        downs.setdefault(a, []).append(b)
        downs.setdefault(b, [])
    layer: dict[str, int] = {}

    def visit(name: str, seen: frozenset[str]) -> int:
        if name in layer:
            return layer[name]
        if name in seen:  # a cycle cannot come from valid specs; break it rather than recurse
            return 0
        layer[name] = 1 + max((visit(u, seen | {name}) for u in ups[name]), default=-1)
        return layer[name]

    for name in ups:
        visit(name, frozenset())
    for name in ups:
        if not ups[name] and downs[name]:
            layer[name] = min(layer[d] for d in downs[name]) - 1
    return layer


def _add_dummies(
    graph: Graph, layer: dict[str, int]
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[str, ...]]]:
    """Split every edge spanning k > 1 layers into k unit edges through k - 1 dummies."""
    unit: list[tuple[str, str]] = []
    routes: dict[tuple[str, str], tuple[str, ...]] = {}
    for a, b in graph.edges:
        chain = [f"{DUMMY}{a}>{b}#{k}" for k in range(layer[a] + 1, layer[b])]
        for k, name in enumerate(chain):
            layer[name] = layer[a] + 1 + k
        hops = [a, *chain, b]
        unit += list(zip(hops, hops[1:], strict=False))
        routes[(a, b)] = tuple(chain)
    return unit, routes


def layout(graph: Graph, sweeps: int = 4) -> Layout:
    """Layer, add dummies, then order each layer by its neighbours' mean slot (barycenter)."""
    layer = _layers(graph)
    unit, routes = _add_dummies(graph, layer)
    columns: dict[int, list[str]] = {}
    for name in sorted(layer, key=lambda n: (layer[n], n.startswith(DUMMY), n)):
        columns.setdefault(layer[name], []).append(name)
    slot = {n: float(i) for col in columns.values() for i, n in enumerate(col)}
    nbrs: dict[str, list[str]] = {n: [] for n in layer}
    for a, b in unit:
        nbrs[a].append(b)
        nbrs[b].append(a)
    for sweep in range(sweeps):
        order = sorted(columns) if sweep % 2 == 0 else sorted(columns, reverse=True)
        for col in order:
            names = columns[col]

            def key(n: str) -> tuple[float, str]:
                near = [slot[m] for m in nbrs[n]]
                return (sum(near) / len(near) if near else slot[n], n)

            names.sort(key=key)
            for i, n in enumerate(names):
                slot[n] = float(i)
    # Centre every column on the tallest one so edges stay short and the picture balanced.
    tallest = max((len(c) for c in columns.values()), default=0)
    for names in columns.values():
        offset = (tallest - len(names)) / 2
        for n in names:
            slot[n] += offset
    return Layout(layer, slot, routes)
