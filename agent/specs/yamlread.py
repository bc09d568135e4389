"""YAML reading that remembers where every key came from, for `file:line` error messages, and
that bounds the work any document can cause.

Used by `agent.specs` to load `specs/repos.yaml` and `specs/pipelines/*.yaml`. PyYAML's node tree
(`compose`) keeps the line of every key; we construct the plain data from that same tree and keep
a map from spec paths (tuples of keys and list indexes) to 1-based line numbers. Duplicate keys,
which `yaml.safe_load` silently collapses to the last value, are reported as errors here.

The text comes from a pull request, so the composer is bounded before anything recurses or
expands: nesting deeper than `MAX_DEPTH` (PyYAML's composer and every walker after it recurse),
more than `MAX_NODES` nodes once aliases are expanded, aliases that expand to more than
`MAX_ALIAS_NODES` nodes or `MAX_ALIAS_CHARS` characters (a "billion laughs" document of 1.4 KB
otherwise takes gigabytes), and recursive aliases are all a `YamlProblem` at the line where the
limit was crossed. Keys must be text and strings must be sendable to Pachyderm (no NUL, no lone
surrogates, no NaN or infinity), since everything here becomes a protobuf request.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.specs.safefs import LINE_BREAK

Path_ = tuple[str | int, ...]

MAX_DEPTH = 40  # real specs nest about 8 deep; deep enough for inputs nested 12 levels
MAX_NODES = 20_000  # real specs have about 60; every later check walks each node
MAX_ALIAS_NODES = 2_000  # nodes created by aliases (merge keys included)
MAX_ALIAS_CHARS = 256 * 1024  # characters of scalars repeated by aliases

MAX_INT = 2**128  # far beyond any 64-bit protobuf field, far below Python's int-to-str limit

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")
_SCALARS = yaml.constructor.SafeConstructor()  # builds single scalars to check them
# Scalars PyYAML builds with plain Python calls that raise ValueError, KeyError... instead of a
# YAMLError: 2020-13-45 (a date by its form), !!bool maybe, !!float abc, !!int with no digits.
_BUILDERS = {
    _INT: _SCALARS.construct_yaml_int,
    _FLOAT: _SCALARS.construct_yaml_float,
    "tag:yaml.org,2002:bool": _SCALARS.construct_yaml_bool,
    "tag:yaml.org,2002:timestamp": _SCALARS.construct_yaml_timestamp,
}
_BUILD_ERRORS = (ValueError, ArithmeticError, LookupError, AttributeError, TypeError)


class YamlProblem(Exception):
    """The text is not one valid YAML document; `line` is 1-based."""

    def __init__(self, line: int, message: str, path: Path_ = (), hint: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path
        self.hint = hint


@dataclass(frozen=True)
class LoadedYaml:
    """A document as plain Python data plus the line of each path in it."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of `path`, or of its nearest ancestor we know (1 for the document)."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)


def load_yaml(text: str) -> LoadedYaml:
    """Parses exactly one YAML document, raising `YamlProblem` with a line for any error."""
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        raise _reader_problem(text, exc) from None
    try:
        if not loader.check_node():
            return LoadedYaml(data=None, lines={(): 1})
        node = loader.get_node()
        if node is None:
            return LoadedYaml(data=None, lines={(): 1})
        if loader.check_node():
            extra = loader.get_node()
            raise YamlProblem(
                extra.start_mark.line + 1 if extra is not None else 1,
                "more than one YAML document in this file; put one spec per file",
            )
        lines: dict[Path_, int] = {(): node.start_mark.line + 1}
        _record_lines(node, (), lines)
        data = loader.construct_document(node)
    except _BUILD_ERRORS as exc:  # a safety net: _check_scalar builds each risky scalar first
        raise YamlProblem(1, f"invalid YAML value: {str(exc)[:200]}") from None
    except yaml.MarkedYAMLError as exc:
        raise _problem(exc) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"invalid YAML: {str(exc)[:200]}") from None
    finally:
        loader.dispose()
    return LoadedYaml(data=data, lines=lines)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer measures every node as it is built (expanded size, characters
    and height, aliases included) and stops at the first limit crossed."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._measure: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, chars, height)
        self._nodes = 0  # expanded nodes so far
        self._alias_nodes = 0
        self._alias_chars = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._count_alias(target, str(event.anchor), line)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlProblem(line, f"the document is nested more than {MAX_DEPTH} levels deep",
                              hint="flatten the structure; real specs nest about 8 levels")
        self._grow(1, line)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._measure[id(node)] = self._size(node)
        return node

    def _size(self, node: Any) -> tuple[int, int, int]:
        if isinstance(node, yaml.ScalarNode):
            return 1, len(node.value), 1
        children = [c for pair in node.value for c in pair] if isinstance(
            node, yaml.MappingNode) else list(node.value)
        sizes = [self._measure[id(c)] for c in children]
        return (1 + sum(s[0] for s in sizes), sum(s[1] for s in sizes),
                1 + max((s[2] for s in sizes), default=0))

    def _count_alias(self, target: yaml.Node, anchor: str, line: int) -> None:
        if id(target) not in self._measure:
            raise YamlProblem(line, f"alias *{anchor} is used inside the node it names "
                              "(a recursive structure)", hint="YAML for specs cannot be recursive")
        nodes, chars, height = self._measure[id(target)]
        self._alias_nodes += nodes
        self._alias_chars += chars
        if self._alias_nodes > MAX_ALIAS_NODES or self._alias_chars > MAX_ALIAS_CHARS:
            raise YamlProblem(
                line,
                f"alias *{anchor} expands the document beyond {MAX_ALIAS_NODES} nodes or "
                f"{MAX_ALIAS_CHARS // 1024} KiB created by aliases",
                hint="aliases and merge keys are for small shared blocks: write the values out",
            )
        if self._depth + height > MAX_DEPTH:
            raise YamlProblem(line, f"alias *{anchor} makes the document nested more than "
                              f"{MAX_DEPTH} levels deep", hint="flatten the structure")
        self._grow(nodes, line)

    def _grow(self, nodes: int, line: int) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise YamlProblem(line, f"the document has more than {MAX_NODES} nodes",
                              hint="real specs have a few hundred: split or shorten it")


def _reader_problem(text: str, exc: yaml.reader.ReaderError) -> YamlProblem:
    position = max(0, min(int(exc.position), len(text)))
    line = len(LINE_BREAK.findall(text, 0, position)) + 1
    char = exc.character if isinstance(exc.character, int) else 0
    column = position - _line_start(text, position) + 1
    return YamlProblem(
        line,
        f"character U+{char:04X} is not allowed in YAML (column {column})",
        hint="remove it; write control characters as escapes in a double-quoted string",
    )


def _line_start(text: str, position: int) -> int:
    starts = [m.end() for m in LINE_BREAK.finditer(text, 0, position)]
    return starts[-1] if starts else 0


def _problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    """Where the parser noticed the problem, except at end of file: an unclosed quote or
    bracket is only noticed there, and the line where it was opened is the useful one."""
    problem = str(exc.problem or exc.context or "invalid YAML")[:200]
    mark, context = exc.problem_mark, exc.context_mark
    if (
        context is not None
        and exc.context
        and (mark is None or "end of stream" in problem or "<stream end>" in problem)
    ):
        problem = f"{problem} ({exc.context} at line {context.line + 1})"
        mark = context
    return YamlProblem(mark.line + 1 if mark is not None else 1, f"invalid YAML: {problem}")


def _record_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    """Lines of every path; also refuses keys that are not text and unsendable scalars. The
    composer bounded the depth and the expanded size, so this recursion is bounded too."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE:
                _record_lines(value_node, path, lines)
                continue
            key = _text_key(key_node, path)
            if key in seen:
                raise YamlProblem(
                    line,
                    f"duplicate key '{key[:100]}' (first at line {seen[key]}); YAML keeps only "
                    "the last",
                    path + (key,),
                )
            seen[key] = line
            lines[path + (key,)] = line
            _record_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _record_lines(item, path + (index,), lines)
    elif isinstance(node, yaml.ScalarNode):
        _check_scalar(node, path)


def _build(node: yaml.ScalarNode, path: Path_) -> Any:
    """The value of a number, boolean or date scalar (None for others), or a YamlProblem."""
    builder = _BUILDERS.get(node.tag)
    if builder is None:
        return None
    value = str(node.value)
    kind = str(node.tag).rsplit(":", 1)[-1]
    try:
        return builder(node)
    except _BUILD_ERRORS as exc:
        if "Exceeds the limit" in str(exc):  # more digits than int() converts (4300)
            message = f"the integer {value[:30]}... is far outside any field of a pipeline spec"
        else:
            why = f" ({str(exc)[:80]})" if type(exc) is ValueError else ""
            message = f"{value[:30]!r} is not a valid {kind}{why}"
        raise YamlProblem(node.start_mark.line + 1, message, path,
                          hint="quote it to make it text, or fix the value") from None


def _text_key(key_node: yaml.Node, path: Path_) -> str:
    line = key_node.start_mark.line + 1
    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
        shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
        kind = str(key_node.tag).rsplit(":", 1)[-1]
        raise YamlProblem(
            line,
            f"key {str(shown)[:50]!r} is not text (YAML reads it as {kind})",
            path,
            hint="quote the key, e.g. \"1\": ..., or rename it",
        )
    _check_scalar(key_node, path)
    return str(key_node.value)


def _check_scalar(node: yaml.ScalarNode, path: Path_) -> None:
    value = str(node.value)
    line = node.start_mark.line + 1
    shown = value if len(value) <= 30 else value[:30] + "..."
    built = _build(node, path)
    if node.tag == _INT and abs(built) >= MAX_INT:
        raise YamlProblem(line, f"the integer {shown} is far outside any field of a pipeline "
                          "spec (64 bits)", path, hint="write a realistic number")
    if node.tag == _FLOAT and not math.isfinite(built):
        raise YamlProblem(line, f"{shown} cannot be sent to Pachyderm (requests are JSON "
                          "and protobuf: no NaN or infinity)", path, hint="write a finite number")
    bad = _UNSENDABLE.search(value)
    if bad:
        raise YamlProblem(line, f"the string contains U+{ord(bad.group()):04X}, which cannot be "
                          "sent to Pachyderm", path,
                          hint="remove the escape (\\0, \\x00 or a lone \\uD800-\\uDFFF)")
