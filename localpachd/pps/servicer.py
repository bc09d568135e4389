"""The pps_v2 gRPC servicer: thin translation between protobuf and the pps domain.

Registered by `localpachd.pps.register`. Writes go through `localpachd.pps.pipelines` (also
registered as transactional methods); reads come from `localpachd.pps.db` rows converted by
`localpachd.pps.convert`; logs are streamed by `localpachd.pps.logstream`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2, message
from python_pachyderm.proto.v2.pps import pps_pb2
from python_pachyderm.proto.v2.pps import pps_pb2_grpc as grpc_pb

from localpachd import errors, pps_spec, runtime_template, secrets, waits
from localpachd.context import Apply, ServerContext, fill_unimplemented
from localpachd.datums import COMPOSITE_KINDS, DatumError, InputSource, RepoFile, compute_datums
from localpachd.jobrun import datum_inputs_json
from localpachd.pfs import files, model
from localpachd.pps import convert, db, jobwatch, listing, logstream, pipelines, template
from localpachd.store import Tx


def _project(p: pps_pb2.Pipeline) -> str:
    return str(p.project.name or "default")


def job_not_found(project: str, pipeline: str, job_id: str) -> errors.NotFound:
    return errors.NotFound(f"job {project}/{pipeline}@{job_id} not found")


def apply_create_pipeline(ctx: ServerContext, tx: Tx, req: pps_pb2.CreatePipelineRequest) -> None:
    if not req.dry_run:
        pipelines.create_pipeline(ctx, tx, req)
        return
    try:
        with tx.savepoint():
            pipelines.create_pipeline(ctx, tx, req)
    except pipelines.DryRun:
        pass


def apply_delete_pipeline(ctx: ServerContext, tx: Tx, req: pps_pb2.DeletePipelineRequest) -> None:
    pipelines.delete_pipeline(ctx, tx, req)


def apply_stop_job(ctx: ServerContext, tx: Tx, req: pps_pb2.StopJobRequest) -> None:
    project, pipeline = _project(req.job.pipeline), req.job.pipeline.name
    job = db.get_job(tx, project, pipeline, req.job.id)
    if job is None:
        raise job_not_found(project, pipeline, req.job.id)
    ctx.pps_engine.kill_job(tx, job, req.reason or "job was stopped")


def _input_commit_ids(tx: Tx, job: db.JobRow) -> set[str]:
    """The job's own ID (its commit set) and the IDs of every input commit it read."""
    out = model.find_commit(tx, job.project, job.pipeline, job.id)
    ids = {job.id}
    if out is not None:
        ids.update(c.id for c in model.commit_provenance(tx, out.cid))
    return ids


def _fill_input_commits(tx: Tx, job: db.JobRow, inp: pps_pb2.Input) -> None:
    """JobInfo.details.input names the input commits the job read, as Pachyderm does."""
    out = model.find_commit(tx, job.project, job.pipeline, job.id)
    if out is None:
        return
    prov = {(c.project, c.repo, c.branch): c.id for c in model.commit_provenance(tx, out.cid)}
    stack = [inp]
    while stack:
        node = stack.pop()
        if node.HasField("pfs"):
            key = (node.pfs.project or job.project, node.pfs.repo, node.pfs.branch or "master")
            node.pfs.commit = prov.get(key, node.pfs.commit)
        if node.HasField("cron"):
            key = (node.cron.project or job.project, node.cron.repo, "master")
            node.cron.commit = prov.get(key, node.cron.commit)
        for kind in COMPOSITE_KINDS:
            stack.extend(getattr(node, kind))


class PPSServicer(grpc_pb.APIServicer):  # type: ignore[misc]
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.engine = ctx.pps_engine

    def _write(self, fn: Apply, req: message.Message) -> empty_pb2.Empty:
        with self.store.write() as tx:
            fn(self.ctx, tx, req)
        return empty_pb2.Empty()

    # ------------------------------------------------------------ pipelines

    def CreatePipeline(
        self, req: pps_pb2.CreatePipelineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        try:  # as 2.7, checked here, not when CreatePipeline is part of a transaction
            secrets.check_pipeline(self.store.data_dir, req.transform.secrets)
        except secrets.SecretMissing as exc:
            raise errors.InvalidArgument(str(exc)) from exc
        return self._write(apply_create_pipeline, req)

    def DeletePipeline(
        self, req: pps_pb2.DeletePipelineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        return self._write(apply_delete_pipeline, req)

    def DeletePipelines(
        self, req: pps_pb2.DeletePipelinesRequest, context: grpc.ServicerContext
    ) -> pps_pb2.DeletePipelinesResponse:
        with self.store.write() as tx:
            return jobwatch.delete_pipelines(self.ctx, tx, req)

    def RunPipeline(
        self, req: pps_pb2.RunPipelineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        raise errors.PachError("unimplemented")  # 2.7 answers exactly this (code UNKNOWN)

    def DeleteAll(self, req: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        with self.store.write() as tx:
            pipelines.delete_all(self.ctx, tx)
        secrets.delete_all(self.store.data_dir)  # as 2.7: user secrets go too
        return empty_pb2.Empty()

    def StartPipeline(
        self, req: pps_pb2.StartPipelineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.store.write() as tx:
            pipelines.set_stopped(self.ctx, tx, req.pipeline, False)
        return empty_pb2.Empty()

    def StopPipeline(
        self, req: pps_pb2.StopPipelineRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.store.write() as tx:
            pipelines.set_stopped(self.ctx, tx, req.pipeline, True)
        return empty_pb2.Empty()

    def RunCron(
        self, req: pps_pb2.RunCronRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        pipelines.run_cron(self.ctx, req.pipeline)
        return empty_pb2.Empty()

    def InspectPipeline(
        self, req: pps_pb2.InspectPipelineRequest, context: grpc.ServicerContext
    ) -> pps_pb2.PipelineInfo:
        self.engine.sync()
        with self.store.read() as tx:
            row = pipelines.require(tx, _project(req.pipeline), req.pipeline.name)
            return listing.pipeline_infos(tx, [row], req.details, self.engine.cap)[0]

    def ListPipeline(
        self, req: pps_pb2.ListPipelineRequest, context: grpc.ServicerContext
    ) -> Iterator[pps_pb2.PipelineInfo]:
        self.engine.sync()
        projects = {p.name for p in req.projects}
        with self.store.read() as tx:
            if req.pipeline.name:
                pipelines.require(tx, _project(req.pipeline), req.pipeline.name)
                rows = db.history(tx, _project(req.pipeline), req.pipeline.name, req.history)
            else:
                rows = [r for r in db.all_history(tx, req.history)
                        if not projects or r.project in projects]  # fmt: skip
            if req.commit_set.id:
                ids = {(j.project, j.pipeline) for j in db.jobs_in_set(tx, req.commit_set.id)}
                rows = [r for r in rows if (r.project, r.name) in ids]
            infos = listing.pipeline_infos(tx, rows, req.details, self.engine.cap)
        yield from infos

    # ------------------------------------------------------------ jobs

    def _job(self, tx: Tx, job: pps_pb2.Job) -> db.JobRow:
        project, pipeline = _project(job.pipeline), job.pipeline.name
        row = db.get_job(tx, project, pipeline, job.id)
        if row is None:
            raise job_not_found(project, pipeline, job.id)
        return row

    def _job_info(self, tx: Tx, job: db.JobRow, details: bool) -> pps_pb2.JobInfo:
        try:
            spec = db.version_spec(tx, job.project, job.pipeline, job.version)
        except KeyError:
            spec = None
        info = convert.job_info(job, spec, details)
        if details and info.details.HasField("input"):
            _fill_input_commits(tx, job, info.details.input)
        return info

    def _wait_job(self, job: pps_pb2.Job, context: grpc.ServicerContext, what: str = "InspectJob"
                  ) -> None:  # fmt: skip
        project, pipeline = _project(job.pipeline), job.pipeline.name

        def done(tx: Tx) -> bool:
            row = db.get_job(tx, project, pipeline, job.id)
            return row is None or row.terminal

        waits.wait_until(self.ctx, context, what, done)

    def InspectJob(
        self, req: pps_pb2.InspectJobRequest, context: grpc.ServicerContext
    ) -> pps_pb2.JobInfo:
        self.engine.sync()
        with self.store.read() as tx:
            self._job(tx, req.job)
        if req.wait:
            self._wait_job(req.job, context)
        with self.store.read() as tx:
            return self._job_info(tx, self._job(tx, req.job), req.details)

    def InspectJobSet(
        self, req: pps_pb2.InspectJobSetRequest, context: grpc.ServicerContext
    ) -> Iterator[pps_pb2.JobInfo]:
        self.engine.sync()
        with self.store.read() as tx:
            jobs = db.jobs_in_set(tx, req.job_set.id)
        for job in jobs:
            if req.wait:
                self._wait_job(convert.job_pb(job.project, job.pipeline, job.id), context,
                               "InspectJobSet")
            with self.store.read() as tx:
                cur = db.get_job(tx, job.project, job.pipeline, job.id)
                info = self._job_info(tx, cur, req.details) if cur is not None else None
            if info is not None:
                yield info

    def ListJob(
        self, req: pps_pb2.ListJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pps_pb2.JobInfo]:
        self.engine.sync()
        projects = {p.name for p in req.projects}
        wanted_commits = {c.id for c in req.input_commit}
        with self.store.read() as tx:
            if req.pipeline.name:
                row = pipelines.require(tx, _project(req.pipeline), req.pipeline.name)
                jobs = db.jobs_of(tx, row.project, row.name)
                if req.history >= 0:
                    jobs = [j for j in jobs if j.version >= row.version - req.history]
            else:
                jobs = [j for j in db.all_jobs(tx) if not projects or j.project in projects]
            if wanted_commits:
                jobs = [j for j in jobs if wanted_commits & _input_commit_ids(tx, j)]
            jobs.sort(key=lambda j: j.seq, reverse=not req.reverse)
            if req.number:
                jobs = jobs[: req.number]
            infos = [self._job_info(tx, j, req.details) for j in jobs]
        yield from infos

    def ListJobSet(
        self, req: pps_pb2.ListJobSetRequest, context: grpc.ServicerContext
    ) -> Iterator[pps_pb2.JobSetInfo]:
        self.engine.sync()
        projects = {p.name for p in req.projects}
        with self.store.read() as tx:
            sets: dict[str, list[db.JobRow]] = {}
            for j in db.all_jobs(tx):
                if not projects or j.project in projects:
                    sets.setdefault(j.id, []).append(j)
            order = sorted(sets, key=lambda i: sets[i][0].seq, reverse=not req.reverse)
            if req.number:
                order = order[: req.number]
            out = []
            for sid in order:
                info = pps_pb2.JobSetInfo(job_set=pps_pb2.JobSet(id=sid))
                info.jobs.extend(self._job_info(tx, j, req.details) for j in sets[sid])
                out.append(info)
        yield from out

    def SubscribeJob(
        self, req: pps_pb2.SubscribeJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pps_pb2.JobInfo]:
        yield from jobwatch.subscribe_job(self.ctx, req, context, self._job_info)

    def ListTask(self, req: message.Message, context: grpc.ServicerContext
                 ) -> Iterator[message.Message]:  # fmt: skip
        """No task service: datums run in-process, so there is never a task to list."""
        yield from ()

    def StopJob(
        self, req: pps_pb2.StopJobRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        return self._write(apply_stop_job, req)

    def DeleteJob(
        self, req: pps_pb2.DeleteJobRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.store.write() as tx:
            job = self._job(tx, req.job)
            self.engine.kill_job(tx, job, "job was deleted")
            db.delete_job(tx, job)
        return empty_pb2.Empty()

    # ------------------------------------------------------------ datums

    def ListDatum(
        self, req: pps_pb2.ListDatumRequest, context: grpc.ServicerContext
    ) -> Iterator[pps_pb2.DatumInfo]:
        if req.HasField("input"):
            yield from self._hypothetical(req.input)
            return
        states = set(req.filter.state)
        with self.store.read() as tx:
            job = self._job(tx, req.job)
            rows = db.datums_of(tx, job.project, job.pipeline, job.id)
        infos = [convert.datum_info(job.project, job.pipeline, d) for d in rows]
        infos = [i for i in infos if not states or i.state in states]
        if req.reverse:
            infos.reverse()
        if req.number:
            infos = infos[: req.number]
        yield from infos

    def _hypothetical(self, inp: pps_pb2.Input) -> list[pps_pb2.DatumInfo]:
        probe = pps_pb2.CreatePipelineRequest(input=inp)
        probe.pipeline.name = "list-datum"
        probe.transform.cmd.append("true")
        try:
            pps_spec.validate(probe)
        except pps_spec.SpecInvalid as exc:
            raise errors.InvalidArgument(str(exc)) from exc
        spec = pps_spec.with_defaults(probe)
        with self.store.read() as tx:

            def lister(pfs: Any) -> InputSource:
                c = model.resolve_commit(tx, pfs["project"], pfs["repo"], pfs["branch"],
                                         pfs.get("commit", ""))  # fmt: skip
                entries = files.tree(tx, c.cid)
                return InputSource(c.id, tuple(RepoFile(e.path, e.hash, e.size) for e in entries))

            try:
                datums = compute_datums(pps_spec.input_dict(spec.input), lister)
            except DatumError as exc:
                raise errors.InvalidArgument(str(exc)) from exc
        out = []
        for d in datums:
            row = db.DatumRow(
                "", d.id, "", db.DatumState.UNKNOWN, 0, "", datum_inputs_json(d), 0, 0, 0
            )
            out.append(convert.datum_info("default", "", row))
        return out

    def InspectDatum(
        self, req: pps_pb2.InspectDatumRequest, context: grpc.ServicerContext
    ) -> pps_pb2.DatumInfo:
        with self.store.read() as tx:
            job = self._job(tx, req.datum.job)
            for d in db.datums_of(tx, job.project, job.pipeline, job.id):
                if d.id == req.datum.id:
                    return convert.datum_info(job.project, job.pipeline, d)
        raise errors.NotFound(f"datum {req.datum.id} not found in job {job.pipeline}@{job.id}")

    def RestartDatum(
        self, req: pps_pb2.RestartDatumRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        filters = list(req.data_filters)
        if not self.engine.restart_datums(req.job, filters):  # as 2.7's workers: none matched
            raise errors.datum_not_matched(filters, req.job.id)
        return empty_pb2.Empty()

    # ------------------------------------------------------------ logs

    def GetLogs(
        self, req: pps_pb2.GetLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[pps_pb2.LogMessage]:
        yield from logstream.get_logs(self.ctx, req, context)

    # ------------------------------------------------------------ templates

    def RenderTemplate(
        self, req: pps_pb2.RenderTemplateRequest, context: grpc.ServicerContext
    ) -> pps_pb2.RenderTemplateResponse:
        """A Jsonnet pipeline template rendered in a limited process of its own (see
        localpachd/runtime_template.py; the bounds and the specs: localpachd/pps/template.py)."""
        args = dict(req.args)
        template.check_request(req.template, args)

        def stop() -> bool:  # the client gave up, or the server stops: the evaluator is killed
            return self.ctx.stopping.is_set() or not context.is_active()

        try:
            rendered = runtime_template.evaluate(req.template, args, stop=stop)
        except runtime_template.Failure as exc:
            raise template.failed(exc.kind, exc.text) from exc
        return template.response(rendered)

    # ------------------------------------------------------------ secrets

    def CreateSecret(
        self, req: pps_pb2.CreateSecretRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        secrets.create(self.store.data_dir, secrets.parse(req.file))
        return empty_pb2.Empty()

    def InspectSecret(
        self, req: pps_pb2.InspectSecretRequest, context: grpc.ServicerContext
    ) -> pps_pb2.SecretInfo:
        return _secret_info(secrets.require(self.store.data_dir, req.secret.name))

    def ListSecret(
        self, req: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> pps_pb2.SecretInfos:
        infos = [_secret_info(s) for s in secrets.list_all(self.store.data_dir)]
        return pps_pb2.SecretInfos(secret_info=infos)

    def DeleteSecret(
        self, req: pps_pb2.DeleteSecretRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        secrets.delete(self.store.data_dir, req.secret.name)
        return empty_pb2.Empty()


def _secret_info(s: secrets.Secret) -> pps_pb2.SecretInfo:
    """What Pachyderm 2.7 returns of a secret: its name, type and creation time, never data."""
    info = pps_pb2.SecretInfo(secret=pps_pb2.Secret(name=s.name), type=s.type)
    info.creation_timestamp.FromNanoseconds(int(s.created * 1e9))
    return info


fill_unimplemented(PPSServicer, "pps_v2.API")
