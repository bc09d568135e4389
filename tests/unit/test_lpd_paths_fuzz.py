"""Property-based fuzz of PFS paths and globs (bounded in `make test`, long in `make fuzz`).

clean_path: never escapes the repo root, is idempotent, agrees with a segment-folding model, and
raises nothing but InvalidArgument. Globs: clean_glob likewise; compile_glob refuses any text with
InvalidArgument only; and the RE2 matcher agrees with a simple reference matcher written straight
from the glob syntax (a set of positions per glob element, `/` never taken by `*` or `?`), while
its captures agree with Python's backtracking `re` on the same small inputs.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Union

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from localpachd.errors import InvalidArgument
from localpachd.globs import clean_glob, compile_glob, glob_to_regex
from localpachd.paths import clean_path

pytestmark = pytest.mark.fuzz

SEGMENTS = st.sampled_from(["a", "b", ".", "..", "", "...", "a.b", " ", "é", "\x00", "\n", "\x7f"])
RAW_PATHS = st.one_of(st.lists(SEGMENTS, max_size=8).map("/".join), st.text(max_size=30))


def _model(path: str) -> str | None:
    """clean_path's rule by folding segments; None where it must refuse."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return None
    parts: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if not parts:
                return None
            parts.pop()
        elif seg not in ("", "."):
            parts.append(seg)
    return "/" + "/".join(parts)


@given(RAW_PATHS)
def test_clean_path_stays_under_root_and_is_idempotent(raw: str) -> None:
    try:
        cleaned = clean_path(raw)
    except InvalidArgument:
        assert _model(raw) is None
        return
    assert cleaned == _model(raw)
    assert clean_path(cleaned) == cleaned
    assert posixpath.normpath("/repo" + cleaned).startswith("/repo")
    segments = cleaned.split("/")[1:]
    assert cleaned == "/" or not {"", ".", ".."} & set(segments)


@given(st.text(alphabet="ab./\x00*{", max_size=30))
def test_clean_glob_is_idempotent_and_refuses_only_with_invalid_argument(raw: str) -> None:
    try:
        cleaned = clean_glob(raw)
    except InvalidArgument:
        assert "\x00" in raw
        return
    assert clean_glob(cleaned) == cleaned
    assert cleaned.startswith("/") and "//" not in cleaned
    assert cleaned == "/" or not cleaned.endswith("/")


@given(st.text(alphabet="ab/*?[]{},()!^-\\", max_size=25))
def test_any_glob_text_compiles_or_is_invalid_argument(raw: str) -> None:
    try:
        glob = compile_glob(clean_glob(raw))
    except InvalidArgument:
        return
    glob.matches("/a/b")
    glob.captures("/ab")


# ------------------------------------------------------------------ a reference glob matcher

@dataclass(frozen=True)
class Lit:
    ch: str


@dataclass(frozen=True)
class Star:
    deep: bool  # `**` crosses `/`


@dataclass(frozen=True)
class One:  # `?`
    pass


@dataclass(frozen=True)
class Class:
    members: str
    negate: bool


@dataclass(frozen=True)
class Range:
    lo: str
    hi: str
    negate: bool


@dataclass(frozen=True)
class Alt:
    branches: tuple[tuple[Node, ...], ...]


@dataclass(frozen=True)
class Group:
    body: tuple[Node, ...]


Node = Union[Lit, Star, One, Class, Range, Alt, Group]  # noqa: UP007 (a runtime alias)
SPECIAL = set("*?[]{},()\\!^-")


def render(seq: tuple[Node, ...]) -> str:
    out = []
    for i, n in enumerate(seq):
        if isinstance(n, Lit):
            out.append("\\" + n.ch if n.ch in SPECIAL else n.ch)
        elif isinstance(n, Star):
            # `*` then `*` would read as `**`: a single star after a star is a no-op, skip it
            prev = seq[i - 1] if i else None
            out.append("" if isinstance(prev, Star) and not n.deep else "**" if n.deep else "*")
        elif isinstance(n, One):
            out.append("?")
        elif isinstance(n, Class):
            out.append("[" + ("!" if n.negate else "") + n.members + "]")
        elif isinstance(n, Range):
            out.append("[" + ("!" if n.negate else "") + n.lo + "-" + n.hi + "]")
        elif isinstance(n, Alt):
            out.append("{" + ",".join(render(b) for b in n.branches) + "}")
        else:
            out.append("(" + render(n.body) + ")")
    return "".join(out)


def _step(n: Node, text: str, starts: set[int]) -> set[int]:
    if isinstance(n, Lit):
        return {p + 1 for p in starts if text[p:p + 1] == n.ch}
    if isinstance(n, Star):
        ends = set()
        for p in starts:
            q = p
            ends.add(q)
            while q < len(text) and (n.deep or text[q] != "/"):
                q += 1
                ends.add(q)
        return ends
    if isinstance(n, One):
        return {p + 1 for p in starts if p < len(text) and text[p] != "/"}
    if isinstance(n, Class):
        return {p + 1 for p in starts if p < len(text)
                and ((text[p] in n.members) != n.negate) and not (n.negate and text[p] == "/")}
    if isinstance(n, Range):
        return {p + 1 for p in starts if p < len(text)
                and ((n.lo <= text[p] <= n.hi) != n.negate) and not (n.negate and text[p] == "/")}
    if isinstance(n, Alt):
        return set().union(*(_run(b, text, starts) for b in n.branches))
    return _run(n.body, text, starts)


def _run(seq: tuple[Node, ...], text: str, starts: set[int]) -> set[int]:
    for n in seq:
        starts = _step(n, text, starts)
    return starts


def reference_match(seq: tuple[Node, ...], text: str) -> bool:
    return len(text) in _run(seq, text, {0})


CHARS = "ab/-."
LEAVES = st.one_of(
    st.sampled_from(CHARS).map(Lit), st.sampled_from("\\{*").map(Lit),
    st.booleans().map(Star), st.just(One()),
    st.builds(Class, st.text(alphabet="ab/.", min_size=1, max_size=3), st.booleans()),
    st.builds(lambda a, b, neg: Range(min(a, b), max(a, b), neg),
              st.sampled_from(CHARS), st.sampled_from(CHARS), st.booleans()),
)


def _composite(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    seqs = st.lists(children, max_size=3).map(tuple)
    return st.one_of(st.lists(seqs, min_size=1, max_size=3).map(lambda b: Alt(tuple(b))),
                     seqs.map(Group))


GLOBS = st.lists(st.recursive(LEAVES, _composite, max_leaves=8), max_size=6).map(tuple)
TEXTS = st.text(alphabet=CHARS, max_size=8)


@given(GLOBS, st.lists(TEXTS, min_size=1, max_size=6))
def test_glob_matcher_agrees_with_the_reference(seq: tuple[Node, ...], texts: list[str]) -> None:
    pattern = render(seq)
    glob = compile_glob(pattern)
    regex, groups = glob_to_regex(pattern)
    assert glob.groups == groups == re.compile(regex).groups
    for text in texts:
        expected = reference_match(seq, text)
        assert glob.matches(text) is expected, (pattern, text)
        backtracking = re.fullmatch(regex, text)  # small inputs: Python's re is the model
        assert (backtracking is not None) is expected, (pattern, regex, text)
        if backtracking is not None:
            assert glob.captures(text) == tuple(g or "" for g in backtracking.groups())


@given(st.text(alphabet=CHARS, max_size=12))
def test_single_star_and_question_mark_never_take_a_slash(text: str) -> None:
    assume(text)
    assert compile_glob("*").matches(text) is ("/" not in text)
    assert compile_glob("**").matches(text)
    assert compile_glob("?").matches(text) is (len(text) == 1 and text != "/")
    assert compile_glob("[!a]").matches(text) is (len(text) == 1 and text not in "a/")
