"""YAML reading that remembers where every key came from, for `file:line` error messages.

Used by `agent.specs` to load `specs/repos.yaml` and `specs/pipelines/*.yaml`. PyYAML's node tree
(`compose`) keeps the line of every key; we construct the plain data from that same tree and keep
a map from spec paths (tuples of keys and list indexes) to 1-based line numbers. Duplicate keys,
which `yaml.safe_load` silently collapses to the last value, are reported as errors here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class YamlProblem(Exception):
    """The text is not one valid YAML document; `line` is 1-based."""

    def __init__(self, line: int, message: str, path: Path_ = ()) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


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
    loader = yaml.SafeLoader(text)
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
    except yaml.MarkedYAMLError as exc:
        raise _problem(exc) from None
    except yaml.YAMLError as exc:  # e.g. a reader error on bad bytes
        raise YamlProblem(1, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return LoadedYaml(data=data, lines=lines)


def _problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    """Where the parser noticed the problem, except at end of file: an unclosed quote or
    bracket is only noticed there, and the line where it was opened is the useful one."""
    problem = exc.problem or exc.context or "invalid YAML"
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
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # complex keys: the schema check reports them
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key == "<<":
                _record_lines(value_node, path, lines)
                continue
            if key in seen:
                raise YamlProblem(
                    line,
                    f"duplicate key '{key}' (first at line {seen[key]}); YAML keeps only the last",
                    path + (key,),
                )
            seen[key] = line
            lines[path + (key,)] = line
            _record_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _record_lines(item, path + (index,), lines)
