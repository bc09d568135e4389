"""SubscribeJob and DeletePipelines as Pachyderm 2.7 serves them (its pps api_server.go).

Called by the pps servicer. SubscribeJob streams each job of one pipeline the first time it is
seen unfinished (jobs already running when the call starts first, oldest first), and keeps
watching until the client leaves or the server stops; a job that is created and ends between
two looks is not sent, as 2.7's watch on its "not terminal" index would miss it too.
DeletePipelines deletes every pipeline of the given projects (or all) in one transaction, the
downstream ones first, and answers with the pipelines it deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import errors
from localpachd.context import ServerContext
from localpachd.pps import db, pipelines
from localpachd.store import Tx

JobInfoOf = Callable[[Tx, db.JobRow, bool], pps_pb2.JobInfo]
WAKE = 1.0  # seconds between looks when nothing is committed (the call may have ended)


def subscribe_job(
    ctx: ServerContext, req: pps_pb2.SubscribeJobRequest, context: grpc.ServicerContext,
    info: JobInfoOf,
) -> Iterator[pps_pb2.JobInfo]:  # fmt: skip
    """The pipeline's unfinished jobs, each once, as they appear."""
    if not req.pipeline.name:
        raise errors.PachError("pipeline must be specified")  # 2.7's text, code UNKNOWN
    project, name = req.pipeline.project.name or "default", req.pipeline.name
    sent: set[str] = set()
    events = ctx.store.events
    while context.is_active() and not ctx.stopping.is_set():
        seen = events.version
        ctx.pps_engine.sync()
        with ctx.store.read() as tx:
            jobs = db.jobs_of(tx, project, name)
            fresh = [j for j in jobs if not j.terminal and j.id not in sent]
            infos = [info(tx, j, req.details) for j in fresh]
        sent.update(j.id for j in fresh)
        yield from infos
        events.wait_change(seen, WAKE)


def delete_pipelines(ctx: ServerContext, tx: Tx, req: pps_pb2.DeletePipelinesRequest
                     ) -> pps_pb2.DeletePipelinesResponse:  # fmt: skip
    """2.7: `all`, or the pipelines of `projects` (none named and not `all`: nothing)."""
    projects = {p.name for p in req.projects}
    rows = [r for r in db.all_current(tx) if req.all or r.project in projects]
    for row in reversed(rows):  # creation order reversed: downstream pipelines go first
        one = pps_pb2.DeletePipelineRequest(force=req.force, keep_repo=req.keep_repo)
        one.pipeline.name, one.pipeline.project.name = row.name, row.project
        pipelines.delete_pipeline(ctx, tx, one)
    out = pps_pb2.DeletePipelinesResponse()
    for row in rows:
        p = out.pipelines.add()
        p.name, p.project.name = row.name, row.project
    return out
