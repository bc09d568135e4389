"""Executing a plan against pachd, in the order that keeps every intermediate state valid.

Called by `agent.sync` only. Phases: (1) create missing input repos; (2) every create and update
(drift reverts included) in DAG order inside ONE Pachyderm transaction, so the whole change is
accepted or rejected at once and starts one consistent set of jobs; (3) deletions, downstream
first. Input repos are never deleted. A failure in phase 2 applies nothing (the client deletes
the transaction); a failure between phases leaves a state the next run completes, because the
plan is recomputed from live state every time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cluster.client import Connection, rpc_errors
from agent.cluster.observe import split_name
from agent.errors import PachsyncError


@dataclass(frozen=True)
class RepoOp:
    name: str
    description: str = ""
    project: str = "default"


@dataclass(frozen=True)
class PipelineOp:
    """One create (update=False) or update of a pipeline; `request` is the spec dict to send."""

    name: str
    request: Mapping[str, Any]
    update: bool = False
    reprocess: bool = False
    file: str = ""


@dataclass(frozen=True)
class ApplyReport:
    repos_created: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()  # pipelines created or updated
    deleted: tuple[str, ...] = ()


def request_of(op: PipelineOp) -> Any:
    """The CreatePipelineRequest for one create/update, with update/reprocess set."""
    try:
        req = json_format.ParseDict(dict(op.request), pps_pb2.CreatePipelineRequest())
    except json_format.ParseError as exc:
        raise PachsyncError(f"{op.file or op.name}: spec does not fit Pachyderm's "
                            f"CreatePipelineRequest: {exc}",
                            hint="run `pachsync validate`") from exc
    req.update = op.update
    req.reprocess = op.reprocess and op.update
    return req


def apply_ops(conn: Connection, repos: Sequence[RepoOp], upserts: Sequence[PipelineOp],
              deletes: Sequence[str]) -> ApplyReport:
    """Run the three phases in order; raises agent.errors types (Transient/Conflict/...).

    `upserts` must be in DAG order (upstream first), `deletes` (`name` or `project/name`)
    downstream first.
    """
    client = conn.client
    created: list[str] = []
    for repo in repos:
        with rpc_errors(f"creating input repo {repo.name!r}", conn.target):
            client.create_repo(repo.name, description=repo.description or None,
                               project_name=repo.project)
        created.append(repo.name)
    requests = [request_of(op) for op in upserts]  # all parsed before anything is sent
    if requests:
        names = ", ".join(op.name for op in upserts)
        with rpc_errors(f"applying pipelines ({names}) in one transaction", conn.target):
            with client.transaction():
                for req in requests:
                    client.create_pipeline_from_request(req)
    deleted: list[str] = []
    for qualified in deletes:
        project, name = split_name(qualified)
        with rpc_errors(f"deleting pipeline {qualified!r}", conn.target):
            client.delete_pipeline(name, project_name=project)
        deleted.append(qualified)
    return ApplyReport(tuple(created), tuple(op.name for op in upserts), tuple(deleted))
