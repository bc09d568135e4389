"""The `pachsync.io/` annotations: every key, the reprocess modes, and how a spec's values read.

The one vocabulary of pipeline annotations, below every layer: `agent.specs.semantic` validates
a spec's annotations against it (file:line), `agent.plan` reads them with the same functions,
and the `--reprocess` choices of `plan`, `apply` and `agent` are `ReprocessMode`'s values. A new
reprocess mode is a new member of `ReprocessMode` (and its meaning in `agent.plan.diff`); a new
annotation a user may set is a new entry of `USER_SET`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

PREFIX = "pachsync.io/"

# Written by the agent on every pipeline it creates or updates (what it applied, from where).
MANAGED_BY = "pachsync.io/managed-by"
SOURCE_COMMIT = "pachsync.io/source-commit"
SPEC_HASH = "pachsync.io/spec-hash"
# The pipeline version our create/update produces (1 on create, live version + 1 on update):
# a later version means someone else updated the pipeline (drift), whatever the server stores.
APPLIED_VERSION = "pachsync.io/applied-version"
AGENT_WRITTEN = frozenset({MANAGED_BY, SOURCE_COMMIT, SPEC_HASH, APPLIED_VERSION})

# Set by a user in a spec.
REPROCESS = "pachsync.io/reprocess"
ADOPT = "pachsync.io/adopt"  # "true": take over the live pipeline of that name if nobody manages it


class ReprocessMode(StrEnum):
    """When an update re-runs the datums already processed (`--reprocess`, or per spec the
    annotation `pachsync.io/reprocess`, which wins)."""

    AUTO = "auto"  # exactly when the normalised transform changed
    ALWAYS = "always"
    NEVER = "never"


ADOPT_VALUES = {"true": True, "false": False}

# Key -> the values it takes, as a hint shows them.
USER_SET: dict[str, str] = {
    REPROCESS: ", ".join(m.value for m in ReprocessMode),
    ADOPT: '"true", "false"',
}


def reprocess_mode(value: str) -> ReprocessMode | None:
    """The mode a `pachsync.io/reprocess` value names (exactly as written), else None."""
    try:
        return ReprocessMode(value)
    except ValueError:
        return None


def adopt_value(value: str) -> bool | None:
    """What a `pachsync.io/adopt` value says ("true"/"false", any case, spaces around), else
    None."""
    return ADOPT_VALUES.get(value.strip().lower())


def adopt_requested(annotations: Mapping[str, str]) -> bool:
    """True if a spec's annotations ask to adopt the live pipeline of its name."""
    return adopt_value(annotations.get(ADOPT, "")) is True


def value_problem(key: str, value: str) -> str:
    """Why a user-set annotation's value is not one it takes ("" when it is fine)."""
    if key == REPROCESS and reprocess_mode(value) is None:
        return f"unknown reprocess mode {value!r}"
    if key == ADOPT and adopt_value(value) is None:
        return f"{ADOPT} must be \"true\" or \"false\", not {value!r}"
    return ""


def is_ours(key: str) -> bool:
    """A key in pachsync's namespace, whatever its case (so `Pachsync.io/x` is not ignored)."""
    return key[: len(PREFIX)].lower() == PREFIX
