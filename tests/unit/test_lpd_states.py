"""Job and datum states are StrEnums whose values are Pachyderm's own enum names (stored as is)."""

from __future__ import annotations

from pathlib import Path

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.pps import db
from localpachd.pps.db import DatumState, JobState
from localpachd.store import Store


def test_every_state_is_a_pachyderm_state_name() -> None:
    assert {s.value for s in JobState} <= set(pps_pb2.JobState.keys())
    assert {s.value for s in DatumState} == set(pps_pb2.DatumState.keys())
    assert JobState.SUCCESS == "JOB_SUCCESS" and DatumState.SKIPPED == "SKIPPED"
    assert all(pps_pb2.JobState.Value(s) for s in JobState)  # the wire conversion by name


def test_terminal_states_are_the_four_ends() -> None:
    assert set(db.TERMINAL) == {JobState.SUCCESS, JobState.FAILURE, JobState.KILLED,
                                JobState.UNRUNNABLE}  # fmt: skip


def test_rows_read_back_carry_the_enums(tmp_path: Path) -> None:
    store = Store(tmp_path, fsync=False)
    try:
        store.register_schema(db.SCHEMA)
        with store.write() as tx:
            db.insert_job(tx, "default", "p", "j1", 1)
            job = db.get_job(tx, "default", "p", "j1")
            assert job is not None and job.state is JobState.CREATED and not job.terminal
            db.put_datum(tx, job, db.DatumRow("j1", "d1", "h", DatumState.SKIPPED, 0, "", [],
                                              0, 0, 0))  # fmt: skip
            db.update_job(tx, job, state=JobState.KILLED)
        with store.read() as tx:
            job = db.get_job(tx, "default", "p", "j1")
            assert job is not None and job.state is JobState.KILLED and job.terminal
            (datum,) = db.datums_of(tx, "default", "p", "j1")
            assert datum.state is DatumState.SKIPPED
            raw = tx.one("SELECT state FROM pps_jobs WHERE id='j1'")
            assert raw is not None and type(raw["state"]) is str and raw["state"] == "JOB_KILLED"
    finally:
        store.close()
