"""PPS for localpachd: pipelines, jobs, datums and logs over the shared store.

`db` (tables), `pipelines` (create/update/delete inside a transaction), `convert` (protobuf),
`servicer` (pps_v2 gRPC methods), `logstream` (GetLogs). The job engine is `localpachd.jobs`.
`register` is called by `localpachd.server`: it starts the engine, registers the servicer and the
transactional methods (CreatePipeline, DeletePipeline, StopJob) and the guards on pipeline output
repos and commits (`guards`), and stops the engine on shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from localpachd.context import ServerContext
    from localpachd.store import Tx


def running_pipelines(tx: Tx) -> list[tuple[str, str, int, dict[str, Any]]]:
    """The pipelines the cron ticker serves: every current version not stopped that has an
    input (project, name, version, input tree as a dict)."""
    from localpachd import pps_spec
    from localpachd.pps import db

    return [(p.project, p.name, p.version, pps_spec.input_dict(p.spec.input))
            for p in db.all_current(tx) if not p.stopped and p.spec.HasField("input")]  # fmt: skip


def register(server: grpc.Server, ctx: ServerContext) -> None:
    # Imported here: the package is loaded by every `from localpachd.pps import db`, the job
    # engine's among them.
    from python_pachyderm.proto.v2.pps import pps_pb2
    from python_pachyderm.proto.v2.pps import pps_pb2_grpc as grpc_pb

    from localpachd import cronticker, longrun, wire
    from localpachd.jobs import JobEngine
    from localpachd.pps import guards, servicer

    engine = JobEngine(
        ctx.store, runtime=ctx.config.runtime, parallelism_cap=ctx.config.parallelism_cap
    )
    ctx.jobs = engine
    ctx.on_stop.append(engine.close)
    ticker = cronticker.Ticker(ctx.store, running_pipelines)
    ctx.on_stop.append(ticker.close)  # stop hooks run in reverse: the ticker before the engine
    ticker.start()
    supervisor = longrun.Supervisor.for_server(ctx)  # spouts, and services' jobs
    ctx.on_stop.append(supervisor.close)  # before the engine and the store close
    supervisor.start()
    ctx.delete_repo_guards.append(guards.refuse_pipeline_repo)
    ctx.finish_commit_guards.append(guards.refuse_pipeline_commit)
    reg = ctx.transactions
    reg.register("/pps_v2.API/CreatePipeline", pps_pb2.CreatePipelineRequest,
                 servicer.apply_create_pipeline, field="create_pipeline")  # fmt: skip
    reg.register("/pps_v2.API/DeletePipeline", pps_pb2.DeletePipelineRequest,
                 servicer.apply_delete_pipeline)  # fmt: skip
    reg.register("/pps_v2.API/StopJob", pps_pb2.StopJobRequest, servicer.apply_stop_job,
                 field="stop_job")  # fmt: skip
    listings = ("/pps_v2.API/ListPipeline", "/pps_v2.API/InspectPipeline")
    wire.register_fast(grpc_pb.add_APIServicer_to_server, servicer.PPSServicer(ctx), server,
                       listings)  # fmt: skip
