"""RestartDatum: a running datum matching the filter is cancelled and started again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers.pachd import in_process_client
from lpd_pps_helpers import counts, last_job, pfs, put, read_repo, sh_pipeline, state

# The first run of the datum hangs; any later run finishes at once.
HANG_ONCE = (
    'echo run >> "$COUNT/n"',
    'if [ "$(wc -l < "$COUNT/n")" -eq 1 ]; then sleep 60; fi',
    "echo ok > /pfs/out/done",
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    # kill_datum is an optional runtime extension; the subprocess runtime has it.
    with in_process_client(tmp_path / "pachd", runtime="subprocess") as client:
        yield client


def test_restart_datum_reruns_a_running_datum_without_using_a_try(
    client: Any, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    count.mkdir()
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    sh_pipeline(client, "hang", pfs("data", "/*"), *HANG_ONCE, datum_tries=1,
                transform={"env": {"COUNT": str(count)}})  # fmt: skip
    job_id = next(iter(client.list_job("hang"))).job.id
    deadline = time.monotonic() + 30
    while not (count / "n").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(grpc.RpcError, match="could not be found"):  # matches nothing (2.7)
        client.restart_datum("hang", job_id, data_filters=["/nope"])
    client.restart_datum("hang", job_id, data_filters=["/a"])
    job = last_job(client, "hang")
    assert state(job) == "JOB_SUCCESS" and counts(job) == (1, 0, 0, 1)
    assert (count / "n").read_text() == "run\nrun\n"
    assert read_repo(client, "hang") == {"/done": "ok\n"}
    with pytest.raises(grpc.RpcError, match="could not be found"):  # finished: nothing runs
        client.restart_datum("hang", job_id)
