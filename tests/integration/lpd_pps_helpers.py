"""Helpers shared by the localpachd pps/jobs integration tests (tiny shell pipelines); `state`,
`put` and `read_repo` come from tests/helpers."""

from __future__ import annotations

from typing import Any

from helpers.jobs import state
from helpers.pfs import put, read_repo
from python_pachyderm.proto.v2.pps import pps_pb2

__all__ = ["counts", "last_job", "pfs", "put", "read_repo", "sh_pipeline", "state", "wait_all"]


def pfs(repo: str, glob: str, **kw: Any) -> pps_pb2.Input:
    return pps_pb2.Input(pfs=pps_pb2.PFSInput(repo=repo, glob=glob, **kw))


def sh_pipeline(client: Any, name: str, inp: pps_pb2.Input, *stdin: str, **kw: Any) -> None:
    transform = pps_pb2.Transform(cmd=["sh"], stdin=list(stdin), **kw.pop("transform", {}))
    client.create_pipeline(name, transform=transform, input=inp, **kw)


def wait_all(client: Any, pipeline: str) -> list[Any]:
    """Every job of the pipeline, waited until terminal, newest first."""
    jobs = list(client.list_job(pipeline, history=-1))
    return [next(iter(client.inspect_job(j.job.id, pipeline, wait=True))) for j in jobs]


def last_job(client: Any, pipeline: str) -> Any:
    return wait_all(client, pipeline)[0]


def counts(job: Any) -> tuple[int, int, int, int]:
    return (job.data_processed, job.data_skipped, job.data_failed, job.data_total)
