"""Property: whatever a pull request does to the project's real specs, `check_specs` answers with
`SpecError`s (never an exception), within bounded work, and a spec it accepts is one the agent
can turn into a CreatePipelineRequest.

Hypothesis mutates specs/pipelines/*.yaml and specs/repos.yaml three ways: as data (type swaps,
huge and negative integers, NaN, control characters, odd keys, deleted keys, deep nesting,
alias bombs, recursive aliases), as text (YAML punctuation and control characters spliced in,
lines duplicated, truncation) and as bytes (invalid UTF-8, NUL). Work is bounded by counting the
Python function calls `check_specs` makes (sys.setprofile), not by the clock: the shipped specs
take about 43,000; a document at the reader's limits a few hundred thousand; the alias bomb of
issue 12 took tens of millions. `make fuzz` runs it with many more examples.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import SpecError
from agent.specs import check_specs

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    str(p.relative_to(ROOT / "specs")): p.read_text()
    for p in sorted([ROOT / "specs/repos.yaml", *(ROOT / "specs/pipelines").glob("*.yaml")])
}
MAX_CALLS = 1_000_000
DEEP, BOMB, LOOP, RAW = "@@deep@@", "@@bomb@@", "@@loop@@", "@@raw@@"
# Plain scalars spliced in unquoted (safe_dump would quote them): values PyYAML builds with
# plain Python calls, tags, undefined aliases, numbers too long to print.
RAW_TOKENS = ["2020-13-45", "2021-02-30 10:00:00", "!!bool maybe", "!!float abc", "!!int",
              "!!timestamp x", "!!binary ====", "!!python/object:os.system [ls]", "*nowhere",
              "!!set {a, b}", "0x" + "f" * 60, "9" * 5000, "1.0e400", ".nan", "-.inf", "1:2:3",
              "0b" + "1" * 200, "~", "=", "<<", "? [a]\n: b"]

CHARS = st.characters(codec="utf-8") | st.sampled_from(
    list("\x00\x01\x1b\x7f\x85\u2028\ufeff\ufffe\t\r\n:-[]{}&*!|>'\"#%@`,?")
)
SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**26, -(10**26), 2**31, 2**63, 2**64, -(2**63) - 1, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(CHARS, max_size=12),
    st.booleans(),
    st.none(),
    st.binary(max_size=6),
    st.sampled_from(["out", ".env", "../../x", "a\n", "/", "600s", "1e39s", DEEP, BOMB, LOOP,
                     RAW]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3),
    max_leaves=6,
)
KEYS = st.one_of(
    st.sampled_from(["name", "repo", "pfs", "cross", "union", "input", "constant", "cpu",
                     "<<", "glob", "image", "env", "project", "trigger", "parallelismSpec"]),
    st.text(CHARS, max_size=8),
    st.integers(),
    st.booleans(),
    st.none(),
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else []
    for key, child in items:
        yield from _paths(child, (*path, key))


def _set(data: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


@st.composite
def data_mutation(draw: st.DrawFn, text: str) -> str:
    data = yaml.safe_load(text)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "delete", "add-key", "wrap"]))
        target = data
        for key in path:
            target = target[key]
        if op == "add-key" and isinstance(target, dict):
            target[draw(KEYS)] = draw(VALUES)
        elif op == "wrap":
            data = _set(data, path, {"cross": [target]} if draw(st.booleans()) else [target])
        else:
            data = _set(data, path, draw(VALUES), delete=op == "delete")
    out = yaml.safe_dump(data, default_flow_style=draw(st.sampled_from([None, True, False])),
                         allow_unicode=draw(st.booleans()), width=10**6)
    depth = draw(st.integers(1, 25_000))
    levels, width = draw(st.integers(1, 12)), draw(st.integers(2, 10))
    bomb = "[&a0 [" + ", ".join(["xxxxxxxx"] * width) + "]" + "".join(
        f", &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]" for k in range(1, levels)
    ) + "]"
    return (out.replace(DEEP, "[" * depth + "]" * depth).replace(BOMB, bomb)
            .replace(LOOP, "&loop [1, *loop]").replace(RAW, draw(st.sampled_from(RAW_TOKENS))))


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "duplicate-line", "truncate"]))
        if op == "insert":
            text = text[:at] + draw(st.text(CHARS, min_size=1, max_size=20)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif op == "duplicate-line":
            lines = text.splitlines(keepends=True) or [""]
            index = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: index + 1] + lines[index:])
        else:
            text = text[:at]
    return text


@st.composite
def byte_mutation(draw: st.DrawFn, text: str) -> bytes:
    raw = text.encode()
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        noise = draw(st.binary(min_size=1, max_size=8))
        raw = raw[:at] + noise + raw[at + (len(noise) if draw(st.booleans()) else 0) :]
    return raw


@st.composite
def mutated_specs(draw: st.DrawFn) -> tuple[str, bytes]:
    file = draw(st.sampled_from(sorted(SOURCES)))
    text = SOURCES[file]
    how = draw(st.sampled_from(["data", "text", "bytes"]))
    if how == "data":
        return file, draw(data_mutation(text)).encode("utf-8", "surrogatepass")
    if how == "text":
        return file, draw(text_mutation(text)).encode("utf-8", "surrogatepass")
    return file, draw(byte_mutation(text))


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("fuzz") / "repo" / "specs"
    shutil.copytree(ROOT / "specs", copy)
    shutil.copytree(ROOT / "data", copy.parent / "data")  # the data specs/repos.yaml declares
    return copy


def _counted_check(specs: Path) -> tuple[Any, int]:
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1
            if calls > MAX_CALLS:
                sys.setprofile(None)
                raise AssertionError(f"check_specs made more than {MAX_CALLS} calls")

    sys.setprofile(count)
    try:
        report = check_specs(specs, root=specs.parent)
    finally:
        sys.setprofile(None)
    return report, calls


def _assert_well_formed(problem: SpecError, files: set[str]) -> None:
    assert isinstance(problem, SpecError), problem
    assert isinstance(problem.line, int) and problem.line >= 0, problem
    assert problem.file in files or problem.file.startswith("specs"), problem
    assert problem.hint and len(problem.message) <= 400 and len(problem.path) <= 200, problem


def _assert_requests_build(report: Any) -> None:
    """Validate passing means the apply step can build every request (no out-of-range int,
    NaN, bad duration or unpaired surrogate reaching protobuf)."""
    from agent.cluster.apply import PipelineOp, request_of

    for pipeline in report.state.pipelines:
        request = request_of(PipelineOp(pipeline.name, pipeline.spec, file=pipeline.file))
        assert request.ByteSize() < 20 * 2**20


@pytest.mark.fuzz
@pytest.mark.timeout(1800)  # `make fuzz`: 5,000 examples take minutes (the default is 300 s)
@given(mutated_specs())
def test_validate_never_raises_and_does_bounded_work(
    specs: Path, mutation: tuple[str, bytes]
) -> None:
    file, content = mutation
    path = specs / file
    try:
        path.write_bytes(content)
        report, calls = _counted_check(specs)
    finally:
        path.write_text(SOURCES[file])
    files = {f"specs/{name}" for name in SOURCES} | {f"specs/{file}"}
    for problem in report.errors + report.warnings:
        _assert_well_formed(problem, files)
    assert len([e for e in report.errors if e.file == f"specs/{file}"]) <= 101
    assert calls <= MAX_CALLS
    if not report.errors:
        assert report.state is not None
        _assert_requests_build(report)


def test_the_shipped_specs_take_far_fewer_calls_than_the_bound(specs: Path) -> None:
    report, calls = _counted_check(specs)
    assert report.errors == () and calls * 10 < MAX_CALLS
