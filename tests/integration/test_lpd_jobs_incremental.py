"""Incremental processing with tiny shell pipelines: skip, re-run, delete, every_job, duplicates."""

from __future__ import annotations

from typing import Any

import pytest
from lpd_pps_helpers import counts, last_job, pfs, put, read_repo, sh_pipeline, state

COPY = 'for f in /pfs/data/*; do cp "$f" /pfs/out/$(basename "$f").out; done'


@pytest.fixture
def client(pach_client: Any) -> Any:
    pach_client.create_repo("data")
    put(pach_client, "data", {"/a": "1\n", "/b": "2\n"})
    return pach_client


def test_unchanged_skipped_changed_rerun_removed_deleted(client: Any) -> None:
    sh_pipeline(client, "copy", pfs("data", "/*"), COPY)
    assert counts(last_job(client, "copy")) == (2, 0, 0, 2)
    put(client, "data", {"/b": "22\n", "/c": "3\n"})
    job = last_job(client, "copy")
    assert counts(job) == (2, 1, 0, 3) and state(job) == "JOB_SUCCESS"
    assert read_repo(client, "copy") == {"/a.out": "1\n", "/b.out": "22\n", "/c.out": "3\n"}
    put(client, "data", {}, delete=("/a",))
    assert counts(last_job(client, "copy")) == (0, 2, 0, 2)
    assert read_repo(client, "copy") == {"/b.out": "22\n", "/c.out": "3\n"}
    datums = list(client.list_datum("copy", last_job(client, "copy").job.id))
    assert sorted(d.state for d in datums) == [3, 3]  # SKIPPED
    assert {d.data[0].file.path for d in datums} == {"/b", "/c"}


def test_every_job_reprocesses_everything(client: Any) -> None:
    sh_pipeline(client, "copy", pfs("data", "/*"), COPY, reprocess_spec="every_job")
    last_job(client, "copy")
    put(client, "data", {"/c": "3\n"})
    assert counts(last_job(client, "copy")) == (3, 0, 0, 3)


def test_update_without_reprocess_keeps_outputs_and_runs_new_code_on_new_datums(
    client: Any,
) -> None:
    sh_pipeline(client, "copy", pfs("data", "/*"), COPY)
    last_job(client, "copy")
    v2 = 'for f in /pfs/data/*; do echo v2 > /pfs/out/$(basename "$f").out; done'
    sh_pipeline(client, "copy", pfs("data", "/*"), v2, update=True)
    job = last_job(client, "copy")
    assert job.pipeline_version == 2 and counts(job) == (0, 2, 0, 2)
    put(client, "data", {"/c": "3\n"})
    assert counts(last_job(client, "copy")) == (1, 2, 0, 3)
    assert read_repo(client, "copy") == {"/a.out": "1\n", "/b.out": "2\n", "/c.out": "v2\n"}
    sh_pipeline(client, "copy", pfs("data", "/*"), v2, update=True, reprocess=True)
    assert counts(last_job(client, "copy")) == (3, 0, 0, 3)
    assert set(read_repo(client, "copy").values()) == {"v2\n"}


def test_duplicate_output_path_fails_the_job(client: Any) -> None:
    sh_pipeline(client, "dup", pfs("data", "/*"), "echo x > /pfs/out/same")
    job = last_job(client, "dup")
    assert state(job) == "JOB_FAILURE"
    assert "duplicate path output by different datums (/same from" in job.reason
    assert read_repo(client, "dup") == {}
