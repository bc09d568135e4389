"""PURE data the cluster layer hands upwards: what is live in Pachyderm, as plain frozen values.

Produced by `agent.cluster.observe` (the only code that talks gRPC) and consumed by the pure
planner (`agent.plan`), `agent.sync` and the `status` command. Kept free of grpc/protobuf types so
the planner can be tested with hand-written values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LiveJob:
    """The newest job of a pipeline (of the version it runs now) and its datum counts."""

    id: str
    state: str  # e.g. "JOB_SUCCESS"
    total: int
    processed: int
    skipped: int
    failed: int
    pipeline_version: int = 0  # 0: not reported
    reason: str = ""  # Pachyderm's reason for a failed, killed or unrunnable job


@dataclass(frozen=True)
class PastVersion:
    """An earlier version of a pipeline: who managed it then (its annotations)."""

    version: int
    annotations: dict[str, str]


@dataclass(frozen=True)
class LivePipeline:
    """One pipeline as Pachyderm stores it. `spec` uses CreatePipelineRequest field names."""

    name: str
    project: str
    spec: dict[str, Any]
    version: int = 1
    state: str = ""  # e.g. "PIPELINE_RUNNING"
    last_job_state: str = ""
    stopped: bool = False
    reason: str = ""  # Pachyderm's reason for a FAILURE or CRASHING state
    # Earlier versions, newest first; None = not looked up (only pipelines git names whose
    # current version lacks pachsync's annotations are: agent.cluster.observe.histories).
    history: tuple[PastVersion, ...] | None = None


@dataclass(frozen=True)
class LiveRepo:
    name: str
    project: str = "default"
    type: str = "user"
    description: str = ""


@dataclass(frozen=True)
class LiveState:
    """Everything the planner needs to know about the cluster, observed in a few RPCs."""

    repos: tuple[LiveRepo, ...] = ()
    pipelines: tuple[LivePipeline, ...] = ()
    jobs: dict[str, LiveJob] = field(default_factory=dict)  # pipeline -> newest job (if fetched)

    def repo_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.repos if r.type == "user")

    def pipeline(self, name: str) -> LivePipeline | None:
        for p in self.pipelines:
            if p.name == name:
                return p
        return None
