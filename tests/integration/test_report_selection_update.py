"""Regression: after only `select` changes (its rule, so it reprocesses in a new commit set),
the report outlines select's NEW selection, not the one of the metrics' own commit set.

Two tiny shell pipelines named `test` (writes one metric file per input) and `select` (writes
selected.json naming the models listed in its env) stand in for the iris DAG.
"""

from __future__ import annotations

import json
from typing import Any

from helpers.wait import wait_for
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cluster import outputs
from agent.report.collect import collect

MODELS = ("model_C1.0_G0.1", "model_C2.0_G0.1")
TERMINAL = {"SUCCESS", "FAILURE", "KILLED", "UNRUNNABLE"}
SELECT_CMD = (
    'printf \'{"rule": {"kind": "tolerance", "tolerance": 0}, "best_accuracy": 1.0, '
    '"selected": [%s]}\' "$PICK" > /pfs/out/selected.json'
)


def _select(client: Any, pick: str, update: bool) -> None:
    client.create_pipeline(
        "select",
        transform=pps_pb2.Transform(image="example.io/tools:1.0", cmd=["sh", "-c", SELECT_CMD],
                                    env={"PICK": pick}),  # fmt: skip
        input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="test", glob="/")),
        update=update,
        reprocess=update,
    )


def _wait_jobs(client: Any, name: str, jobs: int, timeout: float = 120.0) -> None:
    def finished() -> list[Any] | None:
        found = outputs.recent_jobs(client, name, limit=jobs + 1)
        return found if len(found) >= jobs and all(j.state in TERMINAL for j in found) else None

    found = wait_for(finished, f"{name} to finish {jobs} job(s)", timeout, interval=0.3)
    assert all(j.state == "SUCCESS" for j in found), found


def _create_test_and_select(client: Any) -> None:
    client.create_pipeline(
        "test",
        transform=pps_pb2.Transform(
            image="example.io/tools:1.0",
            cmd=["sh", "-c", "cp $scores /pfs/out/$(basename $scores)_metric.txt"],
        ),
        input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="scores", glob="/*")),
    )
    _select(client, f'"{MODELS[0]}"', update=False)


def test_report_follows_a_select_only_update(pach_client: Any) -> None:
    pach_client.create_repo("scores")
    with pach_client.modify_file_client(("scores", "master")) as mfc:
        for name in MODELS:
            mfc.put_file_from_bytes(f"/{name}", b"1.0\n")
    with pach_client.transaction():  # one commit set for both, as `pachsync apply` does
        _create_test_and_select(pach_client)
    _wait_jobs(pach_client, "test", 1)
    _wait_jobs(pach_client, "select", 1)
    first = collect(pach_client, "here")
    assert {r.name for r in first.results if r.selected} == {MODELS[0]}

    _select(pach_client, f'"{MODELS[0]}", "{MODELS[1]}"', update=True)
    _wait_jobs(pach_client, "select", 2)
    newest = json.loads(pach_client.get_file(("select", "master"), "/selected.json").read())
    assert newest["selected"] == list(MODELS)

    second = collect(pach_client, "here")
    assert second.test_commit == first.test_commit  # the metrics did not change
    assert {r.name for r in second.results if r.selected} == set(MODELS)
