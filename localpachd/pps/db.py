"""PPS tables in localpachd's SQLite database: pipelines (every version), jobs and datums.

Used by `localpachd.pps.pipelines` (create/update/delete), `localpachd.jobs` (the engine) and the
pps servicer (reads). Rows live in the same database as PFS, so a pipeline change and its output
branch/commit commit atomically; functions take the store `Tx` first.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypedDict

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.store import Tx

SCHEMA = """
CREATE TABLE IF NOT EXISTS pps_pipelines(
    project TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, spec BLOB NOT NULL,
    created REAL NOT NULL, PRIMARY KEY(project, name, version));
CREATE TABLE IF NOT EXISTS pps_current(
    project TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    stopped INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'PIPELINE_RUNNING',
    reason TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, PRIMARY KEY(project, name));
CREATE TABLE IF NOT EXISTS pps_jobs(
    project TEXT NOT NULL, pipeline TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    started REAL, finished REAL, processed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
    restart INTEGER NOT NULL DEFAULT 0, download_bytes INTEGER NOT NULL DEFAULT 0,
    upload_bytes INTEGER NOT NULL DEFAULT 0, process_time REAL NOT NULL DEFAULT 0,
    seq INTEGER PRIMARY KEY AUTOINCREMENT, UNIQUE(project, pipeline, id));
CREATE INDEX IF NOT EXISTS pps_jobs_by_id ON pps_jobs(id);
CREATE TABLE IF NOT EXISTS pps_datums(
    project TEXT NOT NULL, pipeline TEXT NOT NULL, job TEXT NOT NULL, id TEXT NOT NULL,
    hash TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '', inputs TEXT NOT NULL, process_time REAL NOT NULL DEFAULT 0,
    upload_bytes INTEGER NOT NULL DEFAULT 0, download_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(project, pipeline, job, id));
"""



class DatumInputJSON(TypedDict):
    """One input of a datum as stored in `pps_datums.inputs` (JSON) and shown by ListDatum."""

    name: str
    project: str
    repo: str
    branch: str
    commit: str
    path: str
    hash: str
    size: int


class JobState(StrEnum):
    """A job's state: the names of Pachyderm's `pps_v2.JobState` (stored as these strings)."""

    CREATED = "JOB_CREATED"
    STARTING = "JOB_STARTING"
    RUNNING = "JOB_RUNNING"
    FAILURE = "JOB_FAILURE"
    SUCCESS = "JOB_SUCCESS"
    KILLED = "JOB_KILLED"
    UNRUNNABLE = "JOB_UNRUNNABLE"


class DatumState(StrEnum):
    """A datum's state: the names of Pachyderm's `pps_v2.DatumState` (stored as these strings)."""

    UNKNOWN = "UNKNOWN"
    FAILED = "FAILED"
    SUCCESS = "SUCCESS"
    SKIPPED = "SKIPPED"
    STARTING = "STARTING"
    RECOVERED = "RECOVERED"


TERMINAL: tuple[JobState, ...] = (
    JobState.SUCCESS, JobState.FAILURE, JobState.KILLED, JobState.UNRUNNABLE,
)


@dataclass(frozen=True)
class PipelineRow:
    project: str
    name: str
    version: int
    spec: pps_pb2.CreatePipelineRequest
    created: float
    stopped: bool = False
    state: str = "PIPELINE_RUNNING"
    reason: str = ""
    # The stored spec as serialised: a hashable identity of `spec` for caches of derived values.
    blob: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class JobRow:
    project: str
    pipeline: str
    id: str
    version: int
    state: JobState
    reason: str
    created: float
    started: float | None
    finished: float | None
    processed: int
    skipped: int
    failed: int
    recovered: int
    total: int
    restart: int
    download_bytes: int
    upload_bytes: int
    process_time: float
    seq: int

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


JOB_COLS = (
    "project, pipeline, id, version, state, reason, created, started, finished, processed, "
    "skipped, failed, recovered, total, restart, download_bytes, upload_bytes, process_time, seq"
)


@dataclass(frozen=True)
class DatumRow:
    job: str
    id: str
    hash: str
    state: DatumState
    attempts: int
    reason: str
    inputs: list[DatumInputJSON]
    process_time: float
    upload_bytes: int
    download_bytes: int


# ------------------------------------------------------------------ pipelines


@lru_cache(maxsize=2048)
def parse_spec(blob: bytes) -> pps_pb2.CreatePipelineRequest:
    """Parsed once per distinct stored spec: pure-Python protobuf parsing dominated listings.
    The message is shared by every row with this spec, so readers must never modify it."""
    return pps_pb2.CreatePipelineRequest.FromString(blob)


_CURRENT = (
    "SELECT p.project, p.name, p.version, p.spec, p.created, c.stopped, c.state, c.reason "
    "FROM pps_current c JOIN pps_pipelines p ON p.project=c.project AND p.name=c.name "
    "AND p.version=c.version"
)


def _current_row(r: sqlite3.Row) -> PipelineRow:
    return PipelineRow(r[0], r[1], r[2], parse_spec(r[3]), r[4], bool(r[5]), r[6], r[7],
                       blob=r[3])


def current(tx: Tx, project: str, name: str) -> PipelineRow | None:
    row = tx.one(f"{_CURRENT} WHERE c.project=? AND c.name=?", (project, name))
    return None if row is None else _current_row(row)


def all_current(tx: Tx) -> list[PipelineRow]:
    """Every pipeline's current version in creation order, in one query."""
    return [_current_row(r) for r in tx.q(f"{_CURRENT} ORDER BY c.seq")]


def _with_history(cur: PipelineRow, older: list[tuple[Any, ...]], depth: int
                  ) -> list[PipelineRow]:  # fmt: skip
    """`cur` then up to `depth` (-1 = all) of `older` (version, spec, created), newest first."""
    out = [cur]
    for r in older:
        if r[0] == cur.version:
            continue
        if depth >= 0 and len(out) > depth:
            break
        out.append(PipelineRow(cur.project, cur.name, r[0], parse_spec(r[1]), r[2],
                               cur.stopped, cur.state, blob=r[1]))  # fmt: skip
    return out


def history(tx: Tx, project: str, name: str, depth: int) -> list[PipelineRow]:
    """Current version first, then `depth` older ones (-1 = all)."""
    cur = current(tx, project, name)
    if cur is None:
        return []
    older = [] if depth == 0 else [tuple(r) for r in tx.q(
        "SELECT version, spec, created FROM pps_pipelines WHERE project=? AND name=? "
        "ORDER BY version DESC",
        (project, name),
    )]  # fmt: skip
    return _with_history(cur, older, depth)


def all_history(tx: Tx, depth: int) -> list[PipelineRow]:
    """`history` of every pipeline (creation order) in at most two queries."""
    currents = all_current(tx)
    if depth == 0:
        return currents
    older: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in tx.q("SELECT project, name, version, spec, created FROM pps_pipelines "
                  "ORDER BY project, name, version DESC"):  # fmt: skip
        older.setdefault((r[0], r[1]), []).append(tuple(r)[2:])
    out: list[PipelineRow] = []
    for cur in currents:
        out.extend(_with_history(cur, older.get((cur.project, cur.name), []), depth))
    return out


def version_spec(tx: Tx, project: str, name: str, version: int) -> pps_pb2.CreatePipelineRequest:
    row = tx.one(
        "SELECT spec FROM pps_pipelines WHERE project=? AND name=? AND version=?",
        (project, name, version),
    )
    if row is None:
        raise KeyError(f"pipeline {project}/{name} v{version}")
    return pps_pb2.CreatePipelineRequest.FromString(row[0])  # the caller's own copy


def put_version(
    tx: Tx, project: str, name: str, version: int, spec: pps_pb2.CreatePipelineRequest
) -> None:
    now = time.time()
    tx.x(
        "INSERT OR REPLACE INTO pps_pipelines VALUES(?,?,?,?,?)",
        (project, name, version, spec.SerializeToString(deterministic=True), now),
    )
    if tx.one("SELECT 1 FROM pps_current WHERE project=? AND name=?", (project, name)):
        tx.x(
            "UPDATE pps_current SET version=? WHERE project=? AND name=?",
            (version, project, name),
        )
    else:
        seq = tx.one("SELECT COALESCE(MAX(seq), 0) + 1 FROM pps_current")
        tx.x(
            "INSERT INTO pps_current(project, name, version, seq) VALUES(?,?,?,?)",
            (project, name, version, seq[0] if seq else 1),
        )


def jobless_output_commits(tx: Tx) -> list[tuple[str, str, str, int]]:
    """(project, pipeline, commit id, pipeline version) of each open commit on a pipeline's
    output branch that has no job row yet, by pipeline creation order then commit order."""
    rows = tx.q(
        "SELECT c.project, c.repo, c.id, p.version, c.branch, p.spec FROM pps_current cur "
        "JOIN pps_pipelines p ON p.project=cur.project AND p.name=cur.name "
        "AND p.version=cur.version JOIN commits c ON c.project=cur.project AND c.repo=cur.name "
        "LEFT JOIN pps_jobs j ON j.project=c.project AND j.pipeline=c.repo AND j.id=c.id "
        "WHERE c.finished IS NULL AND j.id IS NULL ORDER BY cur.seq, c.cid"
    )
    specs = [(r, parse_spec(r[5])) for r in rows]
    # A spout's output commits are its process's own (opened through the API); a service's are
    # jobs like any pipeline's (run by localpachd.servicejob).
    return [(r[0], r[1], r[2], r[3]) for r, s in specs
            if r[4] == s.output_branch and not s.HasField("spout")]


def set_stopped(tx: Tx, project: str, name: str, stopped: bool) -> None:
    state = "PIPELINE_PAUSED" if stopped else "PIPELINE_RUNNING"
    tx.x(
        "UPDATE pps_current SET stopped=?, state=?, reason='' WHERE project=? AND name=?",
        (int(stopped), state, project, name),
    )


def delete_pipeline(tx: Tx, project: str, name: str) -> None:
    for table, col in (
        ("pps_pipelines", "name"),
        ("pps_current", "name"),
        ("pps_jobs", "pipeline"),
        ("pps_datums", "pipeline"),
    ):
        tx.x(f"DELETE FROM {table} WHERE project=? AND {col}=?", (project, name))


# ------------------------------------------------------------------ jobs


def _job(row: sqlite3.Row) -> JobRow:
    job = JobRow(*tuple(row))
    return replace(job, state=JobState(job.state))


def insert_job(tx: Tx, project: str, pipeline: str, job_id: str, version: int) -> bool:
    cur = tx.x(
        "INSERT OR IGNORE INTO pps_jobs(project, pipeline, id, version, state, created) "
        f"VALUES(?,?,?,?,'{JobState.CREATED}',?)",
        (project, pipeline, job_id, version, time.time()),
    )
    return bool(cur.rowcount)


def get_job(tx: Tx, project: str, pipeline: str, job_id: str) -> JobRow | None:
    row = tx.one(
        f"SELECT {JOB_COLS} FROM pps_jobs WHERE project=? AND pipeline=? AND id=?",
        (project, pipeline, job_id),
    )
    return _job(row) if row else None


def jobs_of(tx: Tx, project: str, pipeline: str) -> list[JobRow]:
    """Oldest first."""
    rows = tx.q(
        f"SELECT {JOB_COLS} FROM pps_jobs WHERE project=? AND pipeline=? ORDER BY seq",
        (project, pipeline),
    )
    return [_job(r) for r in rows]


@dataclass(frozen=True)
class JobSummary:
    last_state: str | None  # state of the newest job; None without jobs
    unfinished: int  # jobs not in a terminal state


def job_summaries(tx: Tx, project: str | None = None, pipeline: str | None = None
                  ) -> dict[tuple[str, str], JobSummary]:  # fmt: skip
    """Per pipeline (or just the one named): its newest job's state and its unfinished jobs, in
    one query whatever the number of pipelines."""
    where, params = ("", ()) if pipeline is None else (
        "WHERE project=? AND pipeline=?", (project, pipeline))
    marks = ",".join("?" * len(TERMINAL))
    rows = tx.q(
        f"SELECT j.project, j.pipeline, j.state, a.unfinished FROM (SELECT MAX(seq) AS last, "
        f"SUM(state NOT IN ({marks})) AS unfinished FROM pps_jobs {where} "
        "GROUP BY project, pipeline) a JOIN pps_jobs j ON j.seq=a.last",
        (*TERMINAL, *params),
    )
    return {(r[0], r[1]): JobSummary(r[2], int(r[3])) for r in rows}


def jobs_in_set(tx: Tx, job_id: str) -> list[JobRow]:
    return [
        _job(r) for r in tx.q(f"SELECT {JOB_COLS} FROM pps_jobs WHERE id=? ORDER BY seq", (job_id,))
    ]


def all_jobs(tx: Tx) -> list[JobRow]:
    return [_job(r) for r in tx.q(f"SELECT {JOB_COLS} FROM pps_jobs ORDER BY seq")]


def unfinished_jobs(tx: Tx) -> list[JobRow]:
    marks = ",".join("?" * len(TERMINAL))
    rows = tx.q(
        f"SELECT {JOB_COLS} FROM pps_jobs WHERE state NOT IN ({marks}) ORDER BY seq", TERMINAL
    )
    return [_job(r) for r in rows]


def update_job(tx: Tx, job: JobRow, **fields: str | float | None) -> None:
    sets = ", ".join(f"{k}=?" for k in fields)
    tx.x(
        f"UPDATE pps_jobs SET {sets} WHERE project=? AND pipeline=? AND id=?",
        (*fields.values(), job.project, job.pipeline, job.id),
    )


def bump_job(tx: Tx, job: JobRow, **deltas: float) -> None:
    sets = ", ".join(f"{k}={k}+?" for k in deltas)
    tx.x(
        f"UPDATE pps_jobs SET {sets} WHERE project=? AND pipeline=? AND id=?",
        (*deltas.values(), job.project, job.pipeline, job.id),
    )


def delete_job(tx: Tx, job: JobRow) -> None:
    tx.x(
        "DELETE FROM pps_jobs WHERE project=? AND pipeline=? AND id=?",
        (job.project, job.pipeline, job.id),
    )
    tx.x(
        "DELETE FROM pps_datums WHERE project=? AND pipeline=? AND job=?",
        (job.project, job.pipeline, job.id),
    )


# ------------------------------------------------------------------ datums

DATUM_COLS = (
    "job, id, hash, state, attempts, reason, inputs, process_time, upload_bytes, download_bytes"
)


def _datum(row: sqlite3.Row) -> DatumRow:
    r = tuple(row)
    state = DatumState(r[3])
    return DatumRow(r[0], r[1], r[2], state, r[4], r[5], json.loads(r[6]), r[7], r[8], r[9])


def put_datum(tx: Tx, job: JobRow, d: DatumRow) -> None:
    tx.x(
        "INSERT OR REPLACE INTO pps_datums VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            job.project, job.pipeline, job.id, d.id, d.hash, d.state, d.attempts, d.reason,
            json.dumps(d.inputs), d.process_time, d.upload_bytes, d.download_bytes,
        ),
    )  # fmt: skip


def datums_of(tx: Tx, project: str, pipeline: str, job_id: str) -> list[DatumRow]:
    rows = tx.q(
        f"SELECT {DATUM_COLS} FROM pps_datums WHERE project=? AND pipeline=? AND job=? ORDER BY id",
        (project, pipeline, job_id),
    )
    return [_datum(r) for r in rows]


def clear_datums(tx: Tx, job: JobRow) -> None:
    tx.x(
        "DELETE FROM pps_datums WHERE project=? AND pipeline=? AND job=?",
        (job.project, job.pipeline, job.id),
    )
