"""Checks across documents: unique pipeline names, resolvable inputs, and an acyclic DAG.

Used by `agent.specs` after every file is loaded. Files that did not parse still count as the
pipeline their file name promises, so one YAML typo yields one error, not a cascade of
"input repo not declared" errors downstream. A cycle (strongly connected component) is reported
at each of its pipelines, naming the shortest cycle through it. Pure functions.
"""

from __future__ import annotations

from collections import deque

from agent.errors import SpecError
from agent.specs.semantic import PipelineDoc, input_repos
from agent.specs.yamlread import Path_

Key = tuple[str, str]  # (project, name)


def check_graph(
    docs: list[PipelineDoc],
    repos: dict[Key, int],
    repos_file: str,
    unparsed: frozenset[Key] = frozenset(),
    check_repos: bool = True,
) -> list[SpecError]:
    """Unique names, no pipeline named like an input repo, every input known, no cycle.

    `check_repos` is False when repos.yaml did not parse: then only pipeline inputs are known
    and undeclared-repo errors would all be noise."""
    errors: list[SpecError] = []
    by_key: dict[Key, PipelineDoc] = {}
    for doc in sorted(docs, key=lambda d: d.file):
        key = (doc.project, doc.name)
        if not doc.name:
            continue
        if key in by_key:
            errors.append(
                doc.err(
                    ("pipeline", "name"),
                    f"pipeline {doc.name!r} is also defined in {by_key[key].file}",
                    "keep one spec per pipeline",
                )
            )
            continue
        by_key[key] = doc
        if key in repos:
            errors.append(
                doc.err(
                    ("pipeline", "name"),
                    f"pipeline {doc.name!r} has the name of the input repo "
                    f"declared in {repos_file}:{repos[key]}",
                    "a pipeline's output repo takes its name: rename one of them",
                )
            )
    known = set(by_key) | set(repos) | set(unparsed)
    for doc in by_key.values():
        for path, project, repo in input_repos(_spec(doc)):
            key = (project or doc.project, repo)
            if check_repos and key not in known:
                errors.append(
                    doc.err(
                        path + ("repo",),
                        f"input repo {repo!r} is neither declared in {repos_file} "
                        "nor produced by a pipeline",
                        f"add it to {repos_file} or fix the name",
                    )
                )
    errors.extend(_cycles(by_key))
    return errors


def _spec(doc: PipelineDoc) -> dict[str, object]:
    return doc.doc.data if isinstance(doc.doc.data, dict) else {}


def upstream(doc: PipelineDoc, pipelines: set[Key] | dict[Key, PipelineDoc]) -> list[Key]:
    """The pipelines `doc` reads, in input order, without repeats."""
    ups = [(proj or doc.project, repo) for _, proj, repo in input_repos(_spec(doc))]
    return [key for key in dict.fromkeys(ups) if key in pipelines]


def _cycles(by_key: dict[Key, PipelineDoc]) -> list[SpecError]:
    """One error at every pipeline of every cycle, naming the shortest cycle through it: the
    file a change made circular always says so, whichever member sorts first."""
    edges = {key: upstream(doc, by_key) for key, doc in by_key.items()}
    errors: list[SpecError] = []
    for component in _strong_components(edges):
        first = min(component)
        if len(component) == 1 and first not in edges[first]:
            continue
        errors.extend(_cycle_error(by_key[key], key, edges, component) for key in sorted(component))
    return errors


def _cycle_error(doc: PipelineDoc, key: Key, edges: dict[Key, list[Key]],
                 component: set[Key]) -> SpecError:
    cycle = _shortest_cycle(key, edges, component)
    first_up = cycle[1] if len(cycle) > 1 else key
    flow = " -> ".join(k[1] for k in reversed(cycle + [key]))
    return doc.err(
        _input_path(doc, first_up),
        f"pipelines form a cycle: {flow}",
        "a pipeline may not read, directly or not, its own output",
    )


def _input_path(doc: PipelineDoc, up: Key) -> Path_:
    for path, project, repo in input_repos(_spec(doc)):
        if (project or doc.project, repo) == up:
            return path + ("repo",)
    return ("input",)


def _shortest_cycle(start: Key, edges: dict[Key, list[Key]], within: set[Key]) -> list[Key]:
    """[start, up1, up2, ...] following "reads" edges back to start (BFS: shortest)."""
    parent: dict[Key, Key] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for up in edges[node]:
            if up == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                return list(reversed(chain))
            if up in within and up not in parent:
                parent[up] = node
                queue.append(up)
    return [start]


def _strong_components(edges: dict[Key, list[Key]]) -> list[set[Key]]:
    """Tarjan's algorithm, iterative (no recursion limit on long chains)."""
    index: dict[Key, int] = {}
    low: dict[Key, int] = {}
    on_stack: set[Key] = set()
    stack: list[Key] = []
    out: list[set[Key]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out
