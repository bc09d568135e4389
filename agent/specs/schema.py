"""JSON Schema validation of spec documents, with errors turned into `SpecError`s that point at
the offending key's line and say what to do.

Used by `agent.specs` (and through it by `pachsync validate`, the sync loop and CI). The schemas
are the project's own files in `schemas/` (pachsync's strict profile of Pachyderm's spec), so the
same rules guide editors (yaml-language-server), CI and the agent.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from agent.errors import SpecError
from agent.specs.images import image_problem
from agent.specs.yamlread import LoadedYaml, Path_

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
MAX_PATTERN_TEXT = 1024  # the longest text a schema `pattern` is run on


@cache
def load_schema(name: str) -> dict[str, Any]:
    """`name` is "pipeline" or "repos"; the schema file is read once per process."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@cache
def pattern_regex(pattern: str) -> re.Pattern[str]:
    r"""A JSON Schema `pattern` compiled with its ECMA-262 meaning: `$` (outside a character
    class, unescaped) is the end of the text, as in editors and in Go, not Python's "end or
    before a final newline" (with which "abc\n" matched ^[a-z]+$)."""
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        out.append(r"\Z" if char == "$" and not in_class else char)
        i += 1
    return re.compile("".join(out))


def pattern_ok(pattern: str, text: str) -> bool:
    """`text` matches the schema `pattern` and is at most MAX_PATTERN_TEXT long: some
    patterns backtrack (the image rule `[:@][^/]*$` is quadratic in a run of colons), so they
    never see a longer text; no value with a pattern is legitimately that long."""
    return len(text) <= MAX_PATTERN_TEXT and pattern_regex(pattern).search(text) is not None


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "string") or pattern_ok(pattern, instance):
        return
    if len(instance) > MAX_PATTERN_TEXT:
        yield jsonschema.ValidationError(
            f"is {len(instance)} characters long, more than {MAX_PATTERN_TEXT} allowed here",
            validator="maxLength", validator_value=MAX_PATTERN_TEXT, instance=instance)
        return
    yield jsonschema.ValidationError(f"{_brief(instance)} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})


@cache
def _validator(name: str) -> Any:
    schema = load_schema(name)
    jsonschema.Draft7Validator.check_schema(schema)
    return _Validator(schema, format_checker=jsonschema.FormatChecker())


def dotted(path: Path_) -> str:
    """("input", "cross", 1, "pfs", "glob") -> "input.cross[1].pfs.glob"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_errors(schema_name: str, doc: LoadedYaml, file: str) -> list[SpecError]:
    """Every schema violation of `doc`, one `SpecError` each, in document order."""
    leaves = [
        leaf for err in _validator(schema_name).iter_errors(doc.data) for leaf in _leaves(err)
    ]
    # An unknown key also breaks "exactly one input type"; the unknown key is the real news.
    unknown_at = {tuple(e.absolute_path) for e in leaves if e.validator == "additionalProperties"}
    errors = [
        _translate(leaf, doc, file)
        for leaf in leaves
        if not (leaf.validator == "maxProperties" and tuple(leaf.absolute_path) in unknown_at)
        and not _semantic_owns(leaf)
    ]
    unique = {(e.line, e.path, e.message): e for e in errors}
    return sorted(unique.values(), key=lambda e: (e.line, e.path, e.message))


def _semantic_owns(err: jsonschema.ValidationError) -> bool:
    # agent.specs.semantic explains bad pipeline names better (length, first character).
    path = tuple(err.absolute_path)
    return path == ("pipeline", "name") and err.validator in ("pattern", "maxLength")


def _leaves(err: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    # allOf/anyOf wrap the useful messages; report the innermost ones.
    if err.context:
        return [leaf for sub in err.context for leaf in _leaves(sub)]
    return [err]


def _translate(err: jsonschema.ValidationError, doc: LoadedYaml, file: str) -> SpecError:
    path: Path_ = tuple(err.absolute_path)
    kind = err.validator
    if "propertyNames" in err.absolute_schema_path and isinstance(err.instance, str):
        # jsonschema reports a bad key at its mapping; the key's own line is the useful one.
        key_path = path + (err.instance,)
        return SpecError(file, doc.line_of(key_path), dotted(key_path),
                         f"key {_short(err)}", "environment variable names are letters, "
                         "digits and _, not starting with a digit")
    if kind == "additionalProperties":
        return _unknown_keys(err, doc, file, path)
    if kind == "required":
        missing = _quoted(err.message)
        return SpecError(
            file,
            doc.line_of(path),
            dotted(path),
            f"missing required key '{missing}'",
            f"add `{missing}:` under {dotted(path) or 'the top level'}",
        )
    if kind == "pattern" and path and path[-1] == "image":
        problem, hint = image_problem(str(err.instance))
        if problem:
            return SpecError(file, doc.line_of(path), dotted(path), problem, hint)
    if kind in ("maxProperties", "minProperties") and "input" in path[-1:] + path[-2:-1]:
        return SpecError(
            file,
            doc.line_of(path),
            dotted(path),
            "an input must have exactly one of pfs, cron, cross, union, join, group",
            "wrap several inputs in `cross:` or `union:`",
        )
    return SpecError(file, doc.line_of(path), dotted(path), _short(err), _hint_for(err))


def _unknown_keys(
    err: jsonschema.ValidationError, doc: LoadedYaml, file: str, path: Path_
) -> SpecError:
    allowed = sorted((err.schema.get("properties") or {}).keys())
    extra = sorted(set(err.instance) - set(allowed), key=str) if isinstance(err.instance, dict) \
        else []
    key = str(extra[0]) if extra else "?"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
    if "_" not in key and any(c.isupper() for c in key[1:]) and key != "URL":
        hint = "pachsync specs use snake_case keys, as pachctl's YAML does; " + hint
    names = ", ".join(f"'{str(k)[:60]}'" for k in extra[:5])
    names += f" and {len(extra) - 5} more" if len(extra) > 5 else ""
    return SpecError(
        file, doc.line_of(path + (key,)), dotted(path + (key,)), f"unknown key {names}", hint
    )


def _quoted(message: str) -> str:
    return message.split("'")[1] if message.count("'") >= 2 else message


def _short(err: jsonschema.ValidationError) -> str:
    kind = err.validator
    if kind == "type":
        return f"must be of type {err.validator_value}, not {type(err.instance).__name__}"
    if kind == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return f"must be one of {allowed}, not {_brief(err.instance)}"
    if kind == "pattern":
        return f"{_brief(err.instance)} does not match the required pattern {err.validator_value}"
    if kind == "maxLength":
        return f"{_brief(err.instance)} is longer than {err.validator_value} characters"
    if kind in ("maximum", "minimum"):
        bound = "at most" if kind == "maximum" else "at least"
        return f"must be {bound} {err.validator_value}, not {_brief(err.instance)}"
    return clip(str(err.message), 200)


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


def _brief(value: Any) -> str:
    """A repr short enough for one line of output, whatever the document holds."""
    return clip(repr(value), 80)


_BOUND_HINTS = {
    2**63 - 1: "Pachyderm stores it as a 64-bit integer (protobuf int64)",
    -(2**63): "Pachyderm stores it as a 64-bit integer (protobuf int64)",
    2**31 - 1: "Kubernetes replica counts are 32-bit integers",
    3.4028234663852886e38: "Pachyderm stores it as a 32-bit float (protobuf float)",
}


def _hint_for(err: jsonschema.ValidationError) -> str:
    if err.validator == "type" and err.validator_value == "string":
        return 'quote the value so YAML reads it as text, e.g. "0.2"'
    if err.validator == "pattern" and "s$" in str(err.validator_value):
        return 'write durations in seconds, e.g. "600s"'
    if err.validator in ("maximum", "minimum") and err.validator_value in _BOUND_HINTS:
        return _BOUND_HINTS[err.validator_value]
    description = err.schema.get("description") if isinstance(err.schema, dict) else None
    return str(description or "see schemas/ for the allowed values")
