"""snake_case <-> camelCase keys of a pipeline spec, leaving user-named map keys alone.

pachctl's YAML uses snake_case (the protobuf field names); Pachyderm's published JSON Schema and
protobuf's canonical JSON use camelCase. Keys inside maps whose keys are user data (environment
variables, annotations, labels, node selectors) are names, not fields, and must never change:
`SELECT_TOLERANCE` stays `SELECT_TOLERANCE`. Used by tests against Pachyderm's schema and by
anything that needs the canonical JSON form. Pure functions.
"""

from __future__ import annotations

from typing import Any

# Fields whose value is a map from user-chosen names to strings.
USER_MAPS = frozenset({"env", "annotations", "labels", "node_selector", "nodeSelector"})


def camel(key: str) -> str:
    """ "parallelism_spec" -> "parallelismSpec"; keys without "_" (e.g. "URL") are unchanged."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_camel(value: Any) -> Any:
    """A deep copy of `value` with every field name camelCased (user map keys kept)."""
    if isinstance(value, dict):
        return {
            camel(k): (dict(v) if k in USER_MAPS and isinstance(v, dict) else to_camel(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [to_camel(item) for item in value]
    return value
