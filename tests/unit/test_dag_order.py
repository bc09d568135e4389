"""The two DAG orders of the agent, now on the stdlib's graphlib: specs load upstream first in
waves sorted by name (agent.specs), pipelines are deleted readers first, smallest name first
(agent.plan.diff.downstream_first). Both are checked against the hand-written Kahn loops they
replaced, on random DAGs, so the order a reviewer sees in a plan did not move."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.plan.diff import downstream_first
from agent.specs import _ordered
from agent.specs.semantic import PipelineDoc
from agent.specs.yamlread import load_yaml


def _waves_reference(inputs: Mapping[str, Sequence[str]]) -> list[str]:
    pending = {n: {i for i in ups if i in inputs} for n, ups in inputs.items()}
    order: list[str] = []
    while pending:
        ready = sorted(n for n, ups in pending.items() if not ups)
        for n in ready:
            order.append(n)
            del pending[n]
        for ups in pending.values():
            ups.difference_update(ready)
    return order


def _downstream_reference(names: Sequence[str], inputs: Mapping[str, Sequence[str]]) -> list[str]:
    pending = set(names)
    readers: dict[str, set[str]] = {n: set() for n in pending}
    for n in pending:
        for up in inputs.get(n, ()):
            if up in readers and up != n:
                readers[up].add(n)
    blocking = {n: len(r) for n, r in readers.items()}
    ready = sorted(n for n, k in blocking.items() if k == 0)
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for up in inputs.get(n, ()):
            if up in blocking and up != n:
                blocking[up] -= 1
                if blocking[up] == 0:
                    ready.append(up)
        ready.sort()
    return order


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """name -> inputs; a pipeline reads only pipelines drawn before it (acyclic), or repos."""
    names = draw(st.lists(st.from_regex(r"[a-e][a-e0-9]{0,2}", fullmatch=True), min_size=1,
                          max_size=12, unique=True))
    order = draw(st.permutations(names))
    graph: dict[str, list[str]] = {}
    for i, name in enumerate(order):
        graph[name] = draw(st.lists(st.sampled_from([*order[:i], "raw", "params"]),
                                    max_size=3, unique=True))
    return graph


def _docs(graph: Mapping[str, Sequence[str]]) -> list[PipelineDoc]:
    docs = []
    for name, ups in graph.items():
        legs = "".join(f"    - pfs: {{repo: {u}, glob: /}}\n" for u in ups) or \
            "    - pfs: {repo: raw, glob: /}\n"
        text = f"pipeline:\n  name: {name}\ninput:\n  cross:\n{legs}"
        docs.append(PipelineDoc(f"specs/pipelines/{name}.yaml", name, load_yaml(text)))
    return docs


@pytest.mark.fuzz
@given(dags())
def test_specs_load_in_the_same_waves(graph: dict[str, list[str]]) -> None:
    assert [p.name for p in _ordered(_docs(graph))] == _waves_reference(graph)


@pytest.mark.fuzz
@given(dags(), st.data())
def test_deletion_order_is_unchanged(graph: dict[str, list[str]], data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(sorted(graph)), unique=True))
    assert downstream_first(names, graph) == _downstream_reference(names, graph)


def test_a_long_chain_and_a_wide_fan_keep_their_order() -> None:
    chain = {f"p{i:04d}": [f"p{i - 1:04d}"] if i else [] for i in range(2000)}
    assert downstream_first(list(chain), chain) == sorted(chain, reverse=True)
    fan = {"root": [], **{f"leaf{i:03d}": ["root"] for i in range(300)}}
    assert [p.name for p in _ordered(_docs(fan))] == ["root", *sorted(set(fan) - {"root"})]
