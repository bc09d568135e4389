"""Checks that need more than one document or more than JSON Schema can say.

Used by `agent.specs` after the schema check, one pipeline at a time: the name matches the file
and is valid for Pachyderm, input names are unique within a cross/join/group, images are
immutable, `pachsync.io/` annotations are ones a user may set, with values the agent reads
(`agent.util.annotations`), and `salt` is set only knowingly (a warning). Checks across
documents (unique names, declared inputs, no cycle) live in `agent.specs.graph`. Pure functions
over loaded documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent.errors import SpecError
from agent.specs.images import image_problem
from agent.specs.schema import dotted, load_schema, pattern_ok
from agent.specs.yamlread import LoadedYaml, Path_
from agent.util import annotations as ann
from agent.util.inputs import COMBINATORS, walk_pfs

PIPELINE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")  # use fullmatch: `$` allows a final \n
MAX_PIPELINE_NAME = 51  # Pachyderm derives Kubernetes names (<= 63) from it


@dataclass(frozen=True)
class PipelineDoc:
    """A pipeline file that parsed as YAML: its name (from the document), file and lines."""

    file: str
    stem: str
    doc: LoadedYaml

    @property
    def name(self) -> str:
        data = self.doc.data if isinstance(self.doc.data, dict) else {}
        pipeline = data.get("pipeline") if isinstance(data.get("pipeline"), dict) else {}
        return str(pipeline.get("name", "")) if pipeline else ""

    @property
    def project(self) -> str:
        data = self.doc.data if isinstance(self.doc.data, dict) else {}
        pipeline = data.get("pipeline")
        project = pipeline.get("project") if isinstance(pipeline, dict) else None
        return str(project.get("name") or "default") if isinstance(project, dict) else "default"

    def err(self, path: Path_, message: str, hint: str = "") -> SpecError:
        return SpecError(self.file, self.doc.line_of(path), dotted(path), message, hint)


def input_repos(spec: dict[str, Any]) -> list[tuple[Path_, str, str]]:
    """(path, project, repo) of every pfs input; project "" means the pipeline's project."""
    return [
        (path, str(pfs.get("project") or ""), str(pfs.get("repo")))
        for path, pfs in walk_pfs(spec.get("input"))
        if pfs.get("repo")
    ]


def check_pipeline(doc: PipelineDoc) -> list[SpecError]:
    """Checks of one pipeline on its own: name, file name, images, input names."""
    errors: list[SpecError] = []
    name = doc.name
    name_path: Path_ = ("pipeline", "name")
    if name and not PIPELINE_NAME.fullmatch(name):
        errors.append(
            doc.err(
                name_path,
                f"invalid pipeline name {name!r}",
                "use letters, digits, _ and -, starting with a letter or digit",
            )
        )
    if len(name) > MAX_PIPELINE_NAME:
        errors.append(
            doc.err(
                name_path,
                f"pipeline name is {len(name)} characters, Pachyderm allows {MAX_PIPELINE_NAME}",
                "shorten the name (and rename the file to match)",
            )
        )
    if name and name != doc.stem:
        errors.append(
            doc.err(
                name_path,
                f"pipeline name {name!r} differs from the file name {doc.stem!r}",
                f"rename the file to {name}.yaml or set pipeline.name: {doc.stem}",
            )
        )
    spec = doc.doc.data if isinstance(doc.doc.data, dict) else {}
    transform = spec.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    if isinstance(image, str) and image_schema_ok(image):
        # Images the schema pattern rejects were already reported, with this same explanation.
        problem, hint = image_problem(image)
        if problem:
            errors.append(doc.err(("transform", "image"), problem, hint))
    errors.extend(input_name_errors(doc, spec.get("input"), ("input",), {}))
    errors.extend(annotation_errors(doc, spec))
    return errors


def annotation_errors(doc: PipelineDoc, spec: dict[str, Any]) -> list[SpecError]:
    """`pachsync.io/` annotations the agent would misread: keys it writes itself, unknown keys
    (a typo would be ignored silently) and values a key does not take."""
    metadata = spec.get("metadata")
    found = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(found, dict):
        return []
    errors = []
    for key, value in found.items():
        key = str(key)
        path: Path_ = ("metadata", "annotations", key)
        if key in ann.AGENT_WRITTEN:
            errors.append(doc.err(path, f"annotation {key} is written by the agent on apply",
                                  "remove it from the spec: the agent records it itself"))
        elif key in ann.USER_SET:
            problem = ann.value_problem(key, str(value))
            if problem:
                errors.append(doc.err(path, problem, f"use one of {ann.USER_SET[key]}"))
        elif ann.is_ours(key):
            known = "; ".join(f"{k}: {v}" for k, v in ann.USER_SET.items())
            errors.append(doc.err(path, f"unknown pachsync annotation {key!r}",
                                  f"a spec may set {known}; fix the key or remove it"))
    return errors


def image_schema_ok(image: str) -> bool:
    image_schema = load_schema("pipeline")["definitions"]["transform"]["properties"]["image"]
    return all(pattern_ok(rule["pattern"], image) for rule in image_schema["allOf"])


def warnings_for(doc: PipelineDoc) -> list[SpecError]:
    """Problems that do not block applying: a hand-set salt, /pfs paths naming no input."""
    spec = doc.doc.data if isinstance(doc.doc.data, dict) else {}
    warnings = []
    if "salt" in spec:
        warnings.append(
            doc.err(
                ("salt",),
                "set by hand: Pachyderm uses it only on create (updates keep the old salt, "
                "reprocessing picks a new one), so the live salt drifts from git",
                "remove `salt:`; to re-run every datum, let pachsync update with reprocess",
            )
        )
    return warnings + _unknown_pfs_paths(doc, spec)


PFS_PATH = re.compile(r"/pfs/([A-Za-z0-9_-]+)")


def _unknown_pfs_paths(doc: PipelineDoc, spec: dict[str, Any]) -> list[SpecError]:
    # A datum sees /pfs/<input name> and /pfs/out only; a typo or a renamed input shows up
    # at run time as "file not found" in every datum, so say it before applying.
    transform = spec.get("transform")
    if not isinstance(transform, dict):
        return []
    names = set(_all_input_names(spec.get("input"))) | {"out"}
    places: list[tuple[Path_, Any]] = []
    for key in ("cmd", "stdin"):
        values = transform.get(key)
        if isinstance(values, list):
            places += [((("transform", key, i)), v) for i, v in enumerate(values)]
    env = transform.get("env")
    if isinstance(env, dict):
        places += [(("transform", "env", k), v) for k, v in env.items()]
    warnings = []
    for path, value in places:
        for name in PFS_PATH.findall(value) if isinstance(value, str) else []:
            if name not in names:
                warnings.append(
                    doc.err(
                        path,
                        f"/pfs/{name} is not an input of this pipeline "
                        f"(inputs: {', '.join(sorted(names - {'out'}))})",
                        "use an input's name (its `name:`, else its repo) or /pfs/out",
                    )
                )
    return warnings


def _all_input_names(node: Any) -> Iterator[str]:
    if not isinstance(node, dict):
        return
    name = _input_name(node)
    if name:
        yield name
    for combo in COMBINATORS:
        children = node.get(combo)
        for child in children if isinstance(children, list) else []:
            yield from _all_input_names(child)


# Pachyderm writes the output to /pfs/out and the datum's env file to /pfs/.env (worker/common).
RESERVED_INPUT_NAMES = frozenset({"out", ".env"})


def input_name_errors(
    doc: PipelineDoc, node: Any, path: Path_, names: dict[str, Path_]
) -> list[SpecError]:
    """Pachyderm's validateNames (pps api_server.go): every pfs/cron input has a name (else its
    repo's), not a reserved one, and names are unique across cross, join and group, nested
    ones included; the children of a union may share a name with each other, but not with
    anything beside the union. `names` maps each name seen to where."""
    if not isinstance(node, dict):
        return []
    name = _input_name(node)
    if name is not None:
        return _one_name_errors(doc, node, path, name, names)
    errors: list[SpecError] = []
    for combo in COMBINATORS:
        children = node.get(combo)
        if not isinstance(children, list):
            continue
        copies = []
        for index, child in enumerate(children):
            scope = dict(names) if combo == "union" else names
            errors.extend(input_name_errors(doc, child, path + (combo, index), scope))
            copies.append(scope)
        for scope in copies:
            for seen, where in scope.items():
                names.setdefault(seen, where)
    return errors


def _one_name_errors(
    doc: PipelineDoc, node: dict[str, Any], path: Path_, name: str, names: dict[str, Path_]
) -> list[SpecError]:
    key_path = path + _name_key(node)
    if name in RESERVED_INPUT_NAMES:
        named = key_path[-1] == "name"
        return [doc.err(
            key_path,
            f"input name {name!r} is reserved: Pachyderm writes the pipeline's output to "
            f"/pfs/{name}" if name == "out" else f"input name {name!r} is reserved by Pachyderm",
            "rename the input" if named else
            "set `name:` for this input: a repo named out needs another name under /pfs",
        )]
    if name in names:
        return [doc.err(
            key_path,
            f"input name {name!r} is used more than once (also {dotted(names[name])})",
            "give one of them a distinct `name:`; it becomes /pfs/<name>",
        )]
    names[name] = key_path
    return []


def _name_key(node: dict[str, Any]) -> Path_:
    """The path of the key that gives an input its name: `name`, else `repo`."""
    kind = "pfs" if isinstance(node.get("pfs"), dict) else "cron"
    return (kind, "name") if "name" in node[kind] else (kind, "repo")


def _input_name(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    for kind in ("pfs", "cron"):
        inner = node.get(kind)
        if isinstance(inner, dict):
            return str(inner.get("name") or inner.get("repo") or "") or None
    return None
