"""JSON Schema validation of spec documents, with errors turned into `SpecError`s that point at
the offending key's line and say what to do.

Used by `agent.specs` (and through it by `pachsync validate`, the sync loop and CI). The schemas
are the project's own files in `schemas/` (pachsync's strict profile of Pachyderm's spec), so the
same rules guide editors (yaml-language-server), CI and the agent.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from agent.errors import SpecError
from agent.specs.images import image_problem
from agent.specs.yamlread import LoadedYaml, Path_

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """`name` is "pipeline" or "repos"; the schema file is read once per process."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@cache
def _validator(name: str) -> jsonschema.Draft7Validator:
    schema = load_schema(name)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


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
    extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
    key = str(extra[0]) if extra else "?"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
    if "_" not in key and any(c.isupper() for c in key[1:]) and key != "URL":
        hint = "pachsync specs use snake_case keys, as pachctl's YAML does; " + hint
    names = ", ".join(f"'{k}'" for k in extra)
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
        return f"must be one of {', '.join(map(str, err.validator_value))}, not {err.instance!r}"
    if kind == "pattern":
        return f"{err.instance!r} does not match the required pattern {err.validator_value}"
    if kind == "maxLength":
        return f"{err.instance!r} is longer than {err.validator_value} characters"
    return str(err.message)


def _hint_for(err: jsonschema.ValidationError) -> str:
    if err.validator == "type" and err.validator_value == "string":
        return 'quote the value so YAML reads it as text, e.g. "0.2"'
    if err.validator == "pattern" and "s$" in str(err.validator_value):
        return 'write durations in seconds, e.g. "600s"'
    description = err.schema.get("description") if isinstance(err.schema, dict) else None
    return str(description or "see schemas/ for the allowed values")
