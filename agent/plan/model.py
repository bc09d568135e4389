"""PURE data of a plan: what the agent will do to each pipeline and repo, and why.

Built by `agent.plan.diff.plan`, rendered by `agent.plan.render`, executed by
`agent.cluster.apply` (through `agent.sync`). Frozen values only, so a plan can be shown to a
reviewer and then applied exactly as shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.util.annotations import ReprocessMode


class Action(StrEnum):
    """What the plan does to a pipeline (or repo). The values are part of the JSON output,
    /status and the SyncResult's actions: never rename one."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    # live was changed outside git (reverted when self-heal is on), including an update that
    # dropped our annotations after an earlier version carried them
    DRIFT = "drift"
    ORPHAN = "orphan"  # managed by this source but gone from git (deleted only with --prune)
    UNMANAGED = "unmanaged"  # not ours, reported only
    # git wants a name something else owns: skipped, with the pipelines that read it; the rest
    # is applied
    CONFLICT = "conflict"
    # git names a pipeline that no source ever managed: taken over only with --adopt or
    # pachsync.io/adopt
    ADOPT = "adopt"


CREATE, UPDATE, UNCHANGED, DELETE, DRIFT = (Action.CREATE, Action.UPDATE, Action.UNCHANGED,
                                            Action.DELETE, Action.DRIFT)
ORPHAN, UNMANAGED, CONFLICT, ADOPT = Action.ORPHAN, Action.UNMANAGED, Action.CONFLICT, Action.ADOPT

CHANGING = frozenset({CREATE, UPDATE, DELETE, DRIFT, ADOPT})
# Where git and the cluster differ, whether or not this run may fix it (plan --exit-code 1).
PENDING = CHANGING | {ORPHAN, CONFLICT}


@dataclass(frozen=True)
class Policy:
    """How to plan: who we are, what commit, and the user's switches."""

    source_id: str
    commit: str = ""
    prune: bool = False
    allow_empty: bool = False
    reprocess: ReprocessMode = ReprocessMode.AUTO  # a spec's pachsync.io/reprocess wins
    self_heal: bool = True
    adopt: bool = False  # take over pipelines git names that no source manages (--adopt)


@dataclass(frozen=True)
class FieldDiff:
    """One leaf that differs: `path` like `transform.image`, before = live, after = git."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PipelineChange:
    name: str  # `name`, or `project/name` outside the default project (see normalize.qualify)
    action: Action
    reason: str = ""
    reprocess: bool = False
    reprocess_reason: str = ""
    diffs: tuple[FieldDiff, ...] = ()
    file: str = ""  # spec file in git ("" for pipelines only live)
    inputs: tuple[str, ...] = ()
    request: Mapping[str, Any] | None = None  # spec to send (annotations included), if applying
    datums: int | None = None  # datums a reprocess re-runs (last job's total), when known
    managed_by: str = ""
    source_commit: str = ""
    will_apply: bool = False  # True if `apply` sends this change to the cluster
    project: str = "default"
    # Inputs in conflict (or themselves skipped) that keep this change from being applied.
    blocked_by: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Action as reported in SyncResult.actions (contract C4)."""
        if self.action == UPDATE and self.reprocess:
            return "update+reprocess"
        return str(self.action)


@dataclass(frozen=True)
class RepoChange:
    name: str
    action: Action  # CREATE | UNCHANGED
    description: str = ""
    project: str = "default"


@dataclass(frozen=True)
class Plan:
    policy: Policy
    repos: tuple[RepoChange, ...] = ()
    pipelines: tuple[PipelineChange, ...] = ()  # desired in DAG order, then live-only ones
    delete_order: tuple[str, ...] = ()  # pipelines to delete, downstream first
    edges: tuple[tuple[str, str], ...] = ()  # (upstream, pipeline) for the DAG picture
    warnings: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def change(self, name: str) -> PipelineChange | None:
        for c in self.pipelines:
            if c.name == name:
                return c
        return None

    @property
    def repos_to_create(self) -> tuple[RepoChange, ...]:
        return tuple(r for r in self.repos if r.action == CREATE)

    @property
    def to_apply(self) -> tuple[PipelineChange, ...]:
        """Creates and updates (drift reverts included), in DAG order."""
        return tuple(c for c in self.pipelines if c.will_apply and c.action != DELETE)

    @property
    def to_delete(self) -> tuple[PipelineChange, ...]:
        by_name = {c.name: c for c in self.pipelines if c.action == DELETE and c.will_apply}
        return tuple(by_name[n] for n in self.delete_order if n in by_name)

    @property
    def skipped(self) -> tuple[PipelineChange, ...]:
        """What git wants but this run leaves alone because of a conflict: the conflicts and
        the changes that read them (their `blocked_by` says which)."""
        return tuple(c for c in self.pipelines if c.action == CONFLICT or c.blocked_by)

    @property
    def has_changes(self) -> bool:
        """True if git and the cluster differ in anything: what `apply` would fix, and what it
        cannot or may not (conflicts, orphans without --prune, adoptions without --adopt,
        drift that is only reported). `plan --exit-code` exits 1 exactly then."""
        return bool(self.repos_to_create) or any(c.action in PENDING for c in self.pipelines)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.pipelines:
            out[c.label] = out.get(c.label, 0) + 1
        return out
