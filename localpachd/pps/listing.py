"""PipelineInfo messages for InspectPipeline and ListPipeline, in a fixed number of queries.

Called by the pps servicer. A listing reads the pipelines (`db.all_history`), one summary of
every pipeline's jobs and the set of existing repos, then converts each row. Pure-Python
protobuf makes conversion the expensive part, so a finished PipelineInfo is memoised on
everything it is built from (the stored spec bytes, version, state, last job state, ...): any
change to a pipeline, its jobs or its inputs changes the key, so there is nothing to invalidate.
The memoised messages are shared between calls: callers hand them to gRPC and never modify them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import pps_spec, wire
from localpachd.datums import pfs_inputs
from localpachd.pps import convert, db
from localpachd.store import Tx


@dataclass(frozen=True)
class _Facts:
    """Everything besides the row that decides a PipelineInfo."""

    last_job_state: str | None
    standby: bool
    missing_input: str
    cap: int
    details: bool


@lru_cache(maxsize=2048)
def _input_repos(blob: bytes, project: str) -> tuple[tuple[str, str], ...]:
    spec = db.parse_spec(blob)
    return tuple((pfs.get("project") or project, pfs["repo"])
                 for pfs in pfs_inputs(pps_spec.input_dict(spec.input)))  # fmt: skip


def _repos(tx: Tx) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in tx.q("SELECT project, name FROM repos")}


def _facts(row: db.PipelineRow, jobs: db.JobSummary | None, repos: set[tuple[str, str]],
           cap: int, details: bool) -> _Facts:  # fmt: skip
    # Autoscaled to zero when nothing is left to process (also with no jobs at all).
    standby = not row.stopped and row.spec.autoscaling and (jobs is None or jobs.unfinished == 0)
    missing = next((f"{p}/{r}" for p, r in _input_repos(row.blob, row.project)
                    if (p, r) not in repos), "")  # fmt: skip
    return _Facts(jobs.last_state if jobs else None, standby, missing, cap, details)


_CACHE_SIZE = 2048  # ~12 KiB each (pure-Python messages)
_cache: dict[tuple[object, ...], pps_pb2.PipelineInfo] = {}


def _build(row: db.PipelineRow, facts: _Facts) -> pps_pb2.PipelineInfo:
    info = convert.pipeline_info(row, facts.details, facts.last_job_state, facts.cap)
    if facts.standby:
        info.state = pps_pb2.PIPELINE_STANDBY
    if facts.missing_input:  # e.g. an upstream repo deleted with force: this pipeline cannot run
        info.state = pps_pb2.PIPELINE_FAILURE
        info.reason = f"input repo {facts.missing_input} not found"
    return info


def _info(row: db.PipelineRow, facts: _Facts) -> pps_pb2.PipelineInfo:
    key = (row.project, row.name, row.version, row.blob, row.created, row.stopped, row.state,
           row.reason, facts)  # fmt: skip
    info = _cache.get(key)
    if info is None:
        info = _build(row, facts)
        if len(_cache) >= _CACHE_SIZE:  # crude bound: entries of old versions just go away
            _cache.clear()
        _cache[key] = wire.remember(info)  # serialised once, too
    return info


def pipeline_infos(tx: Tx, rows: list[db.PipelineRow], details: bool,
                   cap: int) -> list[pps_pb2.PipelineInfo]:  # fmt: skip
    """PipelineInfo of each row in two queries whatever their number; the messages are shared
    (memoised), so callers must not modify them."""
    if not rows:
        return []
    names = {(r.project, r.name) for r in rows}
    only = next(iter(names)) if len(names) == 1 else (None, None)
    jobs = db.job_summaries(tx, *only)
    repos = _repos(tx)
    return [_info(r, _facts(r, jobs.get((r.project, r.name)), repos, cap, details)) for r in rows]
