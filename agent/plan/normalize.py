"""PURE normalisation of pipeline specs, so that git's spec and the live spec compare equal.

Lives inside `agent.plan` (the planner may not import a sibling layer). Called by
`agent.plan.diff` on both sides of every diff. Both a YAML document from `specs/` and a live
`PipelineInfo.details` (turned into a dict by `agent.cluster`) go through `normalize_spec`, which:

- keeps only the fields a user writes (CreatePipelineRequest minus request switches such as
  `update`/`reprocess`/`dry_run`, minus `salt` and everything the server owns);
- accepts camelCase or snake_case keys (Pachyderm's JSON specs use either);
- applies Pachyderm 2.x's server defaults (reference/pachyderm/SEMANTICS.md): image
  `ubuntu:20.04`, output_branch `master`, datum_tries 3, reprocess_spec `until_success`,
  parallelism 1, pfs input name/branch/repo_type/project, cleaned globs, composite children
  sorted by input name;
- drops proto3 default values (empty strings, 0, false, empty lists/maps) the way protobuf does,
  except inside maps (an env var set to "" is a real value);
- so a boolean whose default is false is absent when false: `transform.datum_batching` (Pachyderm
  >= 2.6; the model and test specs set it) written as false, left out, or echoed false by the
  server is one spec, and turning it on is a transform change like any other;
- strips the annotations the agent writes itself (`pachsync.io/managed-by`, `source-commit`,
  `spec-hash`, `applied-version`), so recording what was applied never looks like a change.

No I/O here (enforced by tests/unit/test_layers.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from agent.util import annotations as keys
from agent.util.inputs import COMBINATORS

# The annotation keys, defined once in agent.util.annotations (spec validation reads them too).
ANN_PREFIX = keys.PREFIX
ANN_MANAGED_BY = keys.MANAGED_BY
ANN_SOURCE_COMMIT = keys.SOURCE_COMMIT
ANN_SPEC_HASH = keys.SPEC_HASH
ANN_REPROCESS = keys.REPROCESS
ANN_ADOPT = keys.ADOPT
ANN_APPLIED_VERSION = keys.APPLIED_VERSION
AGENT_ANNOTATIONS = keys.AGENT_WRITTEN

DEFAULT_IMAGE = "ubuntu:20.04"
DEFAULT_PROJECT = "default"

# The fields of a CreatePipelineRequest that describe the pipeline (what a user writes and what
# PipelineInfo.details stores). Request switches and server-owned fields are left out on purpose.
SPEC_FIELDS = frozenset({
    "transform", "tf_job", "parallelism_spec", "egress", "output_branch", "s3_out",
    "resource_requests", "resource_limits", "sidecar_resource_limits", "input", "description",
    "service", "spout", "datum_set_spec", "datum_timeout", "job_timeout", "datum_tries",
    "scheduling_spec", "pod_spec", "pod_patch", "metadata", "reprocess_spec", "autoscaling",
    "tolerations", "sidecar_resource_requests", "determined",
})

# Fields whose value is a string->value map: keys are data, not field names, and "" is a value.
_MAP_FIELDS = frozenset({"env", "annotations", "labels", "node_selector"})
# 64-bit integer fields that protobuf's JSON form renders as strings.
_INT_FIELDS = frozenset({
    "constant", "datum_tries", "number", "size_bytes", "per_worker", "accept_return_code",
    "err_accept_return_code", "memory_volume", "internal_port", "external_port",
    "toleration_seconds",
})
_DURATION_RX = re.compile(r"^(\d+(?:\.\d+)?)s$")
_CAMEL_RX = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(key: str) -> str:
    """`imagePullSecrets` -> `image_pull_secrets`; snake_case keys are returned unchanged."""
    return _CAMEL_RX.sub(lambda m: "_" + m.group(1).lower(), key)


def clean_glob(glob: str) -> str:
    """Pachyderm's glob cleaning: one leading `/`, no trailing `/`, no empty or `.` segments."""
    parts = [p for p in glob.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def _scalar(key: str, value: Any) -> Any:
    if key in _INT_FIELDS and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float):
        # ResourceSpec.cpu is a 32-bit float on the wire: 0.1 comes back as 0.10000000149.
        as_int = int(value)
        return as_int if value == as_int else float(f"{value:.6g}")
    if isinstance(value, str):
        match = _DURATION_RX.match(value)
        if match and key.endswith("timeout"):
            seconds = float(match.group(1))
            return f"{seconds:g}s"
    return value


def _is_empty(value: Any) -> bool:
    """proto3 default values, which protobuf never stores."""
    return value is None or value in ("", False, 0) or value == [] or value == {}


def _clean(value: Any, key: str = "") -> Any:
    """snake_case keys, typed scalars, proto3 defaults removed (recursively)."""
    if isinstance(value, Mapping):
        if key in _MAP_FIELDS:
            return {str(k): _clean(v, "") for k, v in value.items() if v is not None}
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = snake(str(k))
            cleaned = _clean(v, name)
            if not _is_empty(cleaned):
                out[name] = cleaned
        return out
    if isinstance(value, list | tuple):
        return [_clean(v, key) for v in value]
    return _scalar(key, value)


def input_name(inp: Mapping[str, Any]) -> str:
    """Pachyderm's InputName: the pfs/cron name, or the first child's name for composites."""
    for kind in ("pfs", "cron"):
        if kind in inp:
            node = inp[kind]
            return str(node.get("name") or node.get("repo") or "")
    for kind in COMBINATORS:
        if inp.get(kind):
            return input_name(inp[kind][0])
    return ""


def _default_pfs(pfs: dict[str, Any], project: str, pipeline: str) -> dict[str, Any]:
    pfs.setdefault("name", pfs.get("repo", ""))
    pfs.setdefault("repo_type", "user")
    pfs.setdefault("project", project)
    if "trigger" in pfs:
        # The server points triggered inputs at a branch it creates, `<pipeline>-trigger-<n>`.
        pfs["trigger"] = {"branch": "master", **pfs["trigger"]}
        if re.fullmatch(re.escape(pipeline) + r"-trigger-\d+", str(pfs.get("branch", ""))):
            pfs.pop("branch")
    else:
        pfs.setdefault("branch", "master")
    if "glob" in pfs:
        pfs["glob"] = clean_glob(str(pfs["glob"]))
    return pfs


def _default_input(inp: Mapping[str, Any], project: str, pipeline: str = "") -> dict[str, Any]:
    out = dict(inp)
    if "pfs" in out:
        out["pfs"] = _default_pfs(dict(out["pfs"]), project, pipeline)
    if "cron" in out:
        cron = dict(out["cron"])
        cron.setdefault("repo", f"{pipeline}_{cron.get('name', '')}")
        cron.pop("start", None)  # the server stamps "now" when unset: never comparable
        out["cron"] = cron
    for kind in COMBINATORS:
        if kind in out:
            children = [_default_input(c, project, pipeline) for c in out[kind]]
            out[kind] = sorted(children, key=input_name)
    return out


def qualify(project: str, name: str) -> str:
    """How pachsync names a pipeline or repo: `name` in the default project, else `project/name`."""
    return name if project in ("", DEFAULT_PROJECT) else f"{project}/{name}"


def project_of(doc: Mapping[str, Any]) -> str:
    """The project a spec document names (`pipeline.project.name`), else `default`."""
    pipeline = doc.get("pipeline") or {}
    project = pipeline.get("project") or {}
    if isinstance(project, str):
        return project or DEFAULT_PROJECT
    return str(project.get("name") or DEFAULT_PROJECT)


def _apply_defaults(spec: dict[str, Any], project: str, pipeline: str) -> dict[str, Any]:
    transform = dict(spec.get("transform") or {})
    transform.setdefault("image", DEFAULT_IMAGE)
    spec["transform"] = transform
    spec.setdefault("output_branch", "master")
    spec.setdefault("datum_tries", 3)
    spec.setdefault("reprocess_spec", "until_success")
    spec.setdefault("parallelism_spec", {"constant": 1})
    if "input" in spec:
        spec["input"] = _default_input(spec["input"], project, pipeline)
    if "service" in spec:
        spec["service"] = {"type": "NodePort", **spec["service"]}
    spout_service = (spec.get("spout") or {}).get("service")
    if spout_service is not None:
        spec["spout"] = {**spec["spout"], "service": {"type": "NodePort", **spout_service}}
    return spec


def _strip_agent_annotations(spec: dict[str, Any]) -> None:
    metadata = dict(spec.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()
                   if k not in AGENT_ANNOTATIONS}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    if metadata:
        spec["metadata"] = metadata
    else:
        spec.pop("metadata", None)


def normalize_spec(doc: Mapping[str, Any], project: str | None = None) -> dict[str, Any]:
    """The canonical form of a pipeline spec: equal for equal pipelines, whoever wrote it."""
    cleaned = _clean(doc)
    project = project or project_of(cleaned)
    spec = {k: v for k, v in cleaned.items() if k in SPEC_FIELDS}
    pipeline = str((cleaned.get("pipeline") or {}).get("name") or "")
    spec = _apply_defaults(spec, project, pipeline)
    _strip_agent_annotations(spec)
    # Defaults may have produced values protobuf would drop again (e.g. parallelism constant 0).
    if spec.get("parallelism_spec") == {}:
        spec["parallelism_spec"] = {"constant": 1}
    return spec


def annotations_of(doc: Mapping[str, Any]) -> dict[str, str]:
    """All `metadata.annotations` of a spec document (agent ones included)."""
    metadata = doc.get("metadata") or {}
    return {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}


def spec_hash(normalized: Mapping[str, Any]) -> str:
    """A short stable hash of a normalised spec: the value of `pachsync.io/spec-hash`."""
    blob = json.dumps(normalized, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
