"""Pipeline lifecycle inside one store transaction: create/update, delete, stop/start.

Called by the pps servicer (inside `store.write()`) and by FinishTransaction through the
transaction registry (`apply_*` functions). A service's output branch has its inputs as
provenance like any pipeline's (its jobs run through `localpachd.servicejob`); a spout's has none
(its process writes the commits). Everything here only touches the database; running
jobs are stopped via `tx.after_commit`, so a dry run or a failed transaction has no side effect.
"""

from __future__ import annotations

import uuid

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import errors, pps_spec
from localpachd.context import ServerContext
from localpachd.cronticker import cron_inputs
from localpachd.cronticker import run_cron as run_cron_ticks
from localpachd.datums import pfs_inputs
from localpachd.pfs import model
from localpachd.pps import db
from localpachd.store import Tx

UPDATE_REASON = "all jobs killed because pipeline was updated"


def pipeline_str(project: str, name: str) -> str:
    return f"{project}/{name}"


def not_found(project: str, name: str) -> errors.NotFound:
    return errors.NotFound(f'pipeline "{pipeline_str(project, name)}" not found')


def require(tx: Tx, project: str, name: str) -> db.PipelineRow:
    row = db.current(tx, project, name)
    if row is None:
        raise not_found(project, name)
    return row


def _provenance(tx: Tx, spec: pps_pb2.CreatePipelineRequest) -> list[model.BranchKey]:
    prov: list[model.BranchKey] = []
    for pfs in pfs_inputs(pps_spec.input_dict(spec.input)):
        key = model.BranchKey(pfs["project"], pfs["repo"], pfs["branch"])
        model.require_repo(tx, key.project, key.repo)
        if key not in prov:
            prov.append(key)
    return prov


def create_pipeline(ctx: ServerContext, tx: Tx, req: pps_pb2.CreatePipelineRequest) -> None:
    """CreatePipeline with Pachyderm's rules: validate, default, version, salt, output branch."""
    try:
        pps_spec.validate(req)
    except pps_spec.SpecInvalid as exc:
        raise errors.InvalidArgument(str(exc)) from exc
    spec = pps_spec.with_defaults(req)
    project, name = spec.pipeline.project.name, spec.pipeline.name
    model.require_project(tx, project)
    existing = db.current(tx, project, name)
    if existing is not None and not req.update:
        raise errors.AlreadyExists(f'pipeline "{pipeline_str(project, name)}" already exists')
    _create_cron_repos(tx, spec)
    prov = _provenance(tx, spec)
    out = model.BranchKey(project, name, spec.output_branch)
    if out in prov or any(p.project == project and p.repo == name for p in prov):
        raise errors.InvalidArgument(
            f"pipeline {pipeline_str(project, name)} cannot read its own output"
        )
    if spec.HasField("spout"):
        prov = []  # a spout's process writes its own commits: they open no jobs
    if existing is None:
        _create(ctx, tx, spec, out, prov)
    else:
        _update(ctx, tx, existing, spec, req.reprocess, out, prov)
    if req.dry_run:
        raise DryRun()
    tx.after_commit(lambda: ctx.pps_engine.prewarm(project, name, spec))


def _cron_repos(spec: pps_pb2.CreatePipelineRequest) -> list[tuple[str, str]]:
    return [(str(c["project"]), str(c["repo"]))
            for c in cron_inputs(pps_spec.input_dict(spec.input))]  # fmt: skip


def _create_cron_repos(tx: Tx, spec: pps_pb2.CreatePipelineRequest) -> None:
    """As Pachyderm 2.7: each cron input's repo is created unless it exists already."""
    for project, repo in _cron_repos(spec):
        if not tx.one("SELECT 1 FROM repos WHERE project=? AND name=?", (project, repo)):
            name = pipeline_str(spec.pipeline.project.name, spec.pipeline.name)
            description = f"Cron tick repo for pipeline {name}."
            model.create_repo(tx, project, repo, description)


class DryRun(Exception):
    """Raised to roll back a dry-run CreatePipeline after every check passed."""


def _create(
    ctx: ServerContext,
    tx: Tx,
    spec: pps_pb2.CreatePipelineRequest,
    out: model.BranchKey,
    prov: list[model.BranchKey],
) -> None:
    if tx.one("SELECT 1 FROM repos WHERE project=? AND name=?", (out.project, out.repo)):
        raise errors.repo_exists(out.project, out.repo)
    if not spec.salt:
        spec.salt = uuid.uuid4().hex
    model.create_repo(tx, out.project, out.repo, f"Output repo for pipeline {out.repo}.")
    db.put_version(tx, out.project, out.repo, 1, spec)
    model.create_branch(tx, out, None, prov)
    if not _open_in_this_set(tx, out) and not spec.HasField("spout"):
        model.start_commit(tx, out.project, out.repo, out.name, origin="AUTO")


def _update(
    ctx: ServerContext,
    tx: Tx,
    existing: db.PipelineRow,
    spec: pps_pb2.CreatePipelineRequest,
    reprocess: bool,
    out: model.BranchKey,
    prov: list[model.BranchKey],
) -> None:
    # Pachyderm keeps the old salt unless asked to reprocess (a new salt changes every hash).
    spec.salt = uuid.uuid4().hex if reprocess else existing.spec.salt
    engine = ctx.pps_engine
    for job in db.jobs_of(tx, existing.project, existing.name):
        engine.kill_job(tx, job, UPDATE_REASON)
    # Commits opened for jobs that have no row yet are closed too (their job would be stale).
    for c in tx.q(
        "SELECT cid FROM commits WHERE project=? AND repo=? AND finished IS NULL AND id != ?",
        (out.project, out.repo, tx.commit_set_id),
    ):
        model.finish_commit(tx, model.get_commit(tx, c[0]), error=UPDATE_REASON)
    db.put_version(tx, out.project, out.repo, existing.version + 1, spec)
    old_prov = set(model.direct_provenance(tx, out))
    if set(prov) != old_prov or not model.branch_exists(tx, out):
        model.create_branch(tx, out, None, prov)
    if not _open_in_this_set(tx, out) and not spec.HasField("spout"):
        model.start_commit(tx, out.project, out.repo, out.name, origin="AUTO")


def _open_in_this_set(tx: Tx, out: model.BranchKey) -> bool:
    head = model.branch_head(tx, out)
    return head is not None and not head.is_finished and head.id == tx.commit_set_id


def delete_pipeline(ctx: ServerContext, tx: Tx, req: pps_pb2.DeletePipelineRequest) -> None:
    if req.all:
        delete_all(ctx, tx)
        return
    project = req.pipeline.project.name or "default"
    name = req.pipeline.name
    row = db.current(tx, project, name)
    if row is None:
        return  # Pachyderm: deleting a missing pipeline succeeds
    ctx.pps_engine.kill_pipeline_jobs(tx, project, name, "pipeline was deleted")
    out = model.BranchKey(project, name, row.spec.output_branch)
    if req.keep_repo:
        if model.branch_exists(tx, out):
            model.create_branch(tx, out, model.branch_head(tx, out), [])
    elif tx.one("SELECT 1 FROM repos WHERE project=? AND name=?", (project, name)):
        model.delete_repo(tx, project, name, force=req.force)
    if not req.keep_repo:  # as Pachyderm 2.7: the cron repos go with the pipeline
        for cproject, repo in _cron_repos(row.spec):
            if tx.one("SELECT 1 FROM repos WHERE project=? AND name=?", (cproject, repo)):
                model.delete_repo(tx, cproject, repo, force=req.force)
    db.delete_pipeline(tx, project, name)
    tx.after_commit(lambda: ctx.pps_engine.forget(project, name))


def delete_all(ctx: ServerContext, tx: Tx) -> None:
    for row in reversed(db.all_current(tx)):
        req = pps_pb2.DeletePipelineRequest(force=True)
        req.pipeline.name = row.name
        req.pipeline.project.name = row.project
        delete_pipeline(ctx, tx, req)


def set_stopped(ctx: ServerContext, tx: Tx, pipeline: pps_pb2.Pipeline, stopped: bool) -> None:
    project = pipeline.project.name or "default"
    require(tx, project, pipeline.name)
    db.set_stopped(tx, project, pipeline.name, stopped)


def run_cron(ctx: ServerContext, pipeline: pps_pb2.Pipeline) -> None:
    """RunCron: a tick now on each of the pipeline's cron inputs (`cronticker.run_cron`)."""
    project = pipeline.project.name or "default"
    with ctx.store.read() as tx:
        row = require(tx, project, pipeline.name)
    run_cron_ticks(ctx.store, row.project, pps_spec.input_dict(row.spec.input))
