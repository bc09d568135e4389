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
    from collections.abc import Callable

    from localpachd.context import ServerContext
    from localpachd.longrun import Key, Program
    from localpachd.store import Tx


def running_pipelines(tx: Tx) -> list[tuple[str, str, int, dict[str, Any]]]:
    """The pipelines the cron ticker serves: every current version not stopped that has an
    input (project, name, version, input tree as a dict)."""
    from localpachd import pps_spec
    from localpachd.pps import db

    return [(p.project, p.name, p.version, pps_spec.input_dict(p.spec.input))
            for p in db.all_current(tx) if not p.stopped and p.spec.HasField("input")]  # fmt: skip


def long_running_programs(ctx: ServerContext) -> Callable[[Tx], dict[Key, Program]]:
    """The process each running spout and service pipeline wants (`localpachd.longrun`)."""
    from localpachd import pps_spec
    from localpachd.longrun import Program, pipeline_env
    from localpachd.pps import db
    from localpachd.safepath import safe_join
    from localpachd.worker import python_bin_dir

    root = ctx.config.data_dir / "longrun"

    def programs(tx: Tx) -> dict[Key, Program]:
        out: dict[Key, Program] = {}
        for p in db.all_current(tx):
            if p.stopped or not pps_spec.long_running(p.spec):
                continue
            t = p.spec.transform
            env = pipeline_env(p.project, p.name, ctx.config.host, ctx.config.port,
                               dict(t.env), python_bin_dir())  # fmt: skip
            home = safe_join(root, p.project, p.name)
            stdin = ("\n".join(t.stdin) + "\n").encode() if t.stdin else None
            out[(p.project, p.name, p.version)] = Program(
                tuple(t.cmd), stdin, env, safe_join(home, "work"), safe_join(home, "process.log"))
        return out

    return programs


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
    supervisor = longrun.Supervisor(ctx.store, long_running_programs(ctx))
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
