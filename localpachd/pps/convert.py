"""PPS rows -> protobuf messages (PipelineInfo, JobInfo, DatumInfo) for the pps servicer."""

from __future__ import annotations

from google.protobuf import duration_pb2
from python_pachyderm.proto.v2.pfs import pfs_pb2
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import pps_spec
from localpachd.pfs.convert import ts as ts  # re-exported: pps timestamps are the same
from localpachd.pps import db

JOB_STATES = pps_pb2.JobState
PIPELINE_STATES = pps_pb2.PipelineState


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def pipeline_pb(project: str, name: str) -> pps_pb2.Pipeline:
    p = pps_pb2.Pipeline(name=name)
    p.project.name = project
    return p


def job_pb(project: str, pipeline: str, job_id: str) -> pps_pb2.Job:
    return pps_pb2.Job(pipeline=pipeline_pb(project, pipeline), id=job_id)


def commit_pb(project: str, repo: str, branch: str, commit_id: str) -> pfs_pb2.Commit:
    c = pfs_pb2.Commit(id=commit_id)
    c.branch.repo.name = repo
    c.branch.repo.type = "user"
    c.branch.repo.project.name = project
    c.branch.name = branch
    c.repo.CopyFrom(c.branch.repo)
    return c


def _pipeline_type(spec: pps_pb2.CreatePipelineRequest) -> int:
    types = pps_pb2.PipelineInfo
    if spec.HasField("spout"):
        return int(types.PIPELINE_TYPE_SPOUT)
    return int(types.PIPELINE_TYPE_SERVICE if spec.HasField("service")
               else types.PIPELINE_TYPE_TRANSFORM)  # fmt: skip


def pipeline_info(
    row: db.PipelineRow, details: bool, last_job_state: str | None, cap: int
) -> pps_pb2.PipelineInfo:
    info = pps_pb2.PipelineInfo(
        pipeline=pipeline_pb(row.project, row.name),
        version=row.version,
        stopped=row.stopped,
        state=PIPELINE_STATES.Value(row.state),
        reason=row.reason,
        parallelism=pps_spec.parallelism(row.spec, cap),
        type=_pipeline_type(row.spec),
    )
    if last_job_state:
        info.last_job_state = JOB_STATES.Value(last_job_state)
    if details:
        d = pps_spec.details_of(row.spec)
        created = ts(row.created)
        if created is not None:
            d.created_at.CopyFrom(created)
        d.workers_requested = info.parallelism
        d.workers_available = info.parallelism if not row.stopped else 0
        info.details.CopyFrom(d)
    return info


def job_info(
    job: db.JobRow, spec: pps_pb2.CreatePipelineRequest | None, details: bool
) -> pps_pb2.JobInfo:
    info = pps_pb2.JobInfo(
        job=job_pb(job.project, job.pipeline, job.id),
        pipeline_version=job.version,
        output_commit=commit_pb(
            job.project, job.pipeline, spec.output_branch if spec else "master", job.id
        ),
        restart=job.restart,
        data_processed=job.processed,
        data_skipped=job.skipped,
        data_total=job.total,
        data_failed=job.failed,
        data_recovered=job.recovered,
        state=JOB_STATES.Value(job.state),
        reason=job.reason,
    )
    info.stats.process_time.CopyFrom(duration(job.process_time))
    info.stats.download_bytes = job.download_bytes
    info.stats.upload_bytes = job.upload_bytes
    for name, value in (("created", job.created), ("started", job.started),
                        ("finished", job.finished)):  # fmt: skip
        t = ts(value)
        if t is not None:
            getattr(info, name).CopyFrom(t)
    if details and spec is not None:
        _job_details(info.details, spec)
    return info


def _job_details(d: pps_pb2.JobInfo.Details, spec: pps_pb2.CreatePipelineRequest) -> None:
    for name in (
        "transform", "parallelism_spec", "egress", "resource_requests", "resource_limits",
        "sidecar_resource_limits", "input", "datum_set_spec", "datum_timeout", "job_timeout",
        "scheduling_spec", "sidecar_resource_requests",
    ):  # fmt: skip
        if spec.HasField(name):
            getattr(d, name).CopyFrom(getattr(spec, name))
    d.salt = spec.salt
    d.datum_tries = spec.datum_tries
    d.pod_spec = spec.pod_spec
    d.pod_patch = spec.pod_patch


def datum_info(project: str, pipeline: str, d: db.DatumRow) -> pps_pb2.DatumInfo:
    info = pps_pb2.DatumInfo(
        datum=pps_pb2.Datum(job=job_pb(project, pipeline, d.job), id=d.id),
        state=pps_pb2.DatumState.Value(d.state),
    )
    info.stats.process_time.CopyFrom(duration(d.process_time))
    info.stats.upload_bytes = d.upload_bytes
    info.stats.download_bytes = d.download_bytes
    for inp in d.inputs:
        info.data.append(file_info(inp))
    return info


def file_info(inp: db.DatumInputJSON) -> pfs_pb2.FileInfo:
    fi = pfs_pb2.FileInfo(size_bytes=int(inp.get("size", 0)))
    commit = commit_pb(inp["project"], inp["repo"], inp["branch"], inp["commit"])
    fi.file.commit.CopyFrom(commit)
    fi.file.path = inp["path"]
    fi.file_type = pfs_pb2.DIR if inp["path"].endswith("/") else pfs_pb2.FILE
    try:
        fi.hash = bytes.fromhex(inp["hash"])
    except ValueError:
        fi.hash = inp["hash"].encode()
    return fi
