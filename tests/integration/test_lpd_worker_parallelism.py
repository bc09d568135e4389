"""Datums run concurrently: parallelism_spec.constant workers, capped by the server option."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.pachd import in_process_client
from lpd_pps_helpers import counts, last_job, pfs, put, read_repo, sh_pipeline
from python_pachyderm.proto.v2.pps import pps_pb2

# Each datum registers itself in $RUN, waits, and records how many datums ran at that moment.
PROBE = (
    'touch "$RUN/$PACH_DATUM_ID"',
    "sleep 0.6",
    'ls "$RUN" | wc -l | tr -d " " > "/pfs/out/$PACH_DATUM_ID"',
    "sleep 0.2",
    'rm "$RUN/$PACH_DATUM_ID"',
)


def server(tmp_path: Path, cap: int) -> Iterator[Any]:
    with in_process_client(tmp_path / "pachd", max_parallelism=cap) as client:
        client.create_repo("data")
        put(client, "data", {f"/{i}": str(i) for i in range(4)})
        yield client


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Any]:
    yield from server(tmp_path, 1)


@pytest.fixture
def uncapped(tmp_path: Path) -> Iterator[Any]:
    yield from server(tmp_path, 4)


def run_probe(client: Any, tmp_path: Path, constant: int) -> list[int]:
    run = tmp_path / "running"
    run.mkdir()
    sh_pipeline(client, "probe", pfs("data", "/*"), *PROBE,
                parallelism_spec=pps_pb2.ParallelismSpec(constant=constant),
                transform={"env": {"RUN": str(run)}})  # fmt: skip
    assert counts(last_job(client, "probe")) == (4, 0, 0, 4)
    return sorted(int(v) for v in read_repo(client, "probe").values())


def test_cap_limits_concurrency(capped: Any, tmp_path: Path) -> None:
    assert run_probe(capped, tmp_path, constant=4) == [1, 1, 1, 1]
    assert next(iter(capped.inspect_pipeline("probe"))).parallelism == 1


def test_constant_workers_run_together(uncapped: Any, tmp_path: Path) -> None:
    seen = run_probe(uncapped, tmp_path, constant=2)
    assert max(seen) == 2  # never more than 2, and two did overlap
    assert next(iter(uncapped.inspect_pipeline("probe"))).parallelism == 2
