"""Reading live state: repos, pipelines (with their stored specs) and the newest job per pipeline.

Called by `agent.sync` (plan/apply), the `status` and `demo` commands. `observe()` costs exactly
two streaming RPCs whatever the number of pipelines (ListRepo, ListPipeline with details), which
keeps a no-op sync within its budget; `newest_jobs()` is called only for pipelines that need
datum counts (one ListJob each), `histories()` only for pipelines git names whose current
version lacks pachsync's annotations (one ListPipeline with history each). Protobuf messages
become plain dicts here, with the field names of CreatePipelineRequest, so the planner never
sees a protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from google.protobuf.message import Message

from agent.cluster.client import Connection, rpc_errors
from agent.cluster.model import LiveJob, LivePipeline, LiveRepo, LiveState, PastVersion

_WELL_KNOWN = {"google.protobuf.Duration", "google.protobuf.Timestamp"}


def _value(fd: Any, value: Any) -> Any:
    if fd.message_type is not None:
        if fd.message_type.full_name in _WELL_KNOWN:
            return value.ToJsonString()
        return proto_to_dict(value)
    if fd.enum_type is not None:
        enum = fd.enum_type.values_by_number.get(value)
        return enum.name if enum is not None else value
    return value


def proto_to_dict(msg: Message) -> dict[str, Any]:
    """Set fields only (proto3 defaults omitted), original field names, ints stay ints."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            out[fd.name] = {k: _value(vfd, v) for k, v in value.items()}
        elif fd.label == fd.LABEL_REPEATED:
            out[fd.name] = [_value(fd, v) for v in value]
        else:
            out[fd.name] = _value(fd, value)
    return out


def _enum_name(msg: Message, field: str) -> str:
    fd = msg.DESCRIPTOR.fields_by_name[field]
    enum = fd.enum_type.values_by_number.get(getattr(msg, field))
    return enum.name if enum is not None else str(getattr(msg, field))


def live_pipeline(info: Any) -> LivePipeline:
    """PipelineInfo -> LivePipeline (details -> spec dict, with `pipeline` set like a request)."""
    spec = proto_to_dict(info.details)
    project = info.pipeline.project.name or "default"
    spec["pipeline"] = {"name": info.pipeline.name, "project": {"name": project}}
    return LivePipeline(name=info.pipeline.name, project=project, spec=spec,
                        version=int(info.version), state=_enum_name(info, "state"),
                        last_job_state=_enum_name(info, "last_job_state"),
                        stopped=bool(info.stopped), reason=str(info.reason))


def observe(conn: Connection) -> LiveState:
    """Repos and pipelines in two RPCs (one ListRepo stream, one ListPipeline stream)."""
    client = conn.client
    with rpc_errors("listing repos", conn.target):
        repos = tuple(LiveRepo(r.repo.name, r.repo.project.name or "default", r.repo.type or "user",
                               r.description) for r in client.list_repo())
    with rpc_errors("listing pipelines", conn.target):
        pipelines = tuple(live_pipeline(i) for i in client.list_pipeline(details=True))
    return LiveState(repos=repos, pipelines=pipelines)


def histories(conn: Connection, names: Iterable[str]) -> dict[str, tuple[PastVersion, ...]]:
    """The earlier versions of each pipeline (`name` or `project/name`), newest first, with the
    annotations each carried: one ListPipeline(history=-1) per pipeline. Asked only for
    pipelines git names whose current version lacks pachsync's annotations (was one of our
    versions replaced by hand?), so a no-op sync of managed pipelines costs nothing more."""
    out: dict[str, tuple[PastVersion, ...]] = {}
    for qualified in names:
        project, name = split_name(qualified)
        with rpc_errors(f"reading the history of pipeline {qualified!r}", conn.target):
            infos = list(conn.client.inspect_pipeline(name, history=-1, details=True,
                                                      project_name=project))
        newest = max((int(i.version) for i in infos), default=0)
        past = [PastVersion(int(i.version), dict(i.details.metadata.annotations))
                for i in infos if int(i.version) < newest]
        out[qualified] = tuple(sorted(past, key=lambda v: -v.version))
    return out


def with_history(live: LiveState, past: dict[str, tuple[PastVersion, ...]]) -> LiveState:
    """`live` with the looked-up histories set on their pipelines."""
    pipelines = tuple(
        replace(p, history=past[q]) if (q := qualify_name(p.project, p.name)) in past else p
        for p in live.pipelines)
    return replace(live, pipelines=pipelines)


def qualify_name(project: str, name: str) -> str:
    """`name` in the default project, else `project/name` (as agent.plan names pipelines)."""
    return name if project in ("", "default") else f"{project}/{name}"


def live_job(info: Any) -> LiveJob:
    return LiveJob(id=info.job.id, state=_enum_name(info, "state"), total=int(info.data_total),
                   processed=int(info.data_processed), skipped=int(info.data_skipped),
                   failed=int(info.data_failed),
                   pipeline_version=int(info.pipeline_version), reason=str(info.reason))


def split_name(qualified: str) -> tuple[str, str]:
    """`project/name` -> (project, name); a bare `name` is in the default project."""
    project, _, name = qualified.rpartition("/")
    return project or "default", name


def newest_jobs(conn: Connection, names: Iterable[str]) -> dict[str, LiveJob]:
    """The newest job of the version each pipeline runs now (`name` or `project/name`; one
    ListJob per pipeline). ListJob's default `history=0` lists only the current version's jobs,
    so a job an update killed, or one that failed under the previous spec, never counts: the
    current version is the one pachsync applied (`pachsync.io/applied-version`) unless someone
    updated the pipeline since, which is drift."""
    out: dict[str, LiveJob] = {}
    for qualified in names:
        project, name = split_name(qualified)
        with rpc_errors(f"listing jobs of pipeline {qualified!r}", conn.target):
            infos = list(conn.client.list_job(pipeline_name=name, project_name=project))
        if infos:
            newest = max(infos, key=lambda i: (i.created.seconds, i.created.nanos,
                                               i.pipeline_version))
            out[qualified] = live_job(newest)
    return out


def with_jobs(live: LiveState, jobs: dict[str, LiveJob]) -> LiveState:
    return LiveState(repos=live.repos, pipelines=live.pipelines, jobs={**live.jobs, **jobs})
