"""ListPipeline / ListRepo / InspectPipeline answer in a number of SQL queries that does not grow
with the number of pipelines or repos, and their memoised messages follow every change.

Queries are counted by wrapping localpachd's own store wrapper (`Tx.q/one/x`) in the gRPC
worker threads (the job engine's threads query on their own schedule).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.store import Tx
from tests.integration.lpd_pps_helpers import pfs, put, sh_pipeline, wait_all


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []

    def counting(name: str) -> Callable[..., Any]:
        orig = getattr(Tx, name)

        def wrapper(self: Tx, sql: str, *args: Any) -> Any:
            if threading.current_thread().name.startswith("localpachd_"):  # RPC threads only
                seen.append(sql)
            return orig(self, sql, *args)

        return wrapper

    for name in ("q", "one", "x"):
        monkeypatch.setattr(Tx, name, counting(name))
    yield seen


def _count(queries: list[str], call: Callable[[], Any]) -> int:
    queries.clear()
    call()
    return len(queries)


def _add(c: Any, first: int, n: int) -> None:
    for i in range(first, first + n):
        sh_pipeline(c, f"p{i}", pfs("raw", "/*"), "cp -r /pfs/raw/* /pfs/out/ || true")
    for i in range(first, first + n):
        wait_all(c, f"p{i}")


def test_list_queries_do_not_grow_with_pipelines(pach_client: Any, queries: list[str]) -> None:
    c = pach_client
    c.create_repo("raw")
    put(c, "raw", {"a": "1"})
    _add(c, 0, 2)
    calls: dict[str, Callable[[], Any]] = {
        "repos": lambda: list(c.list_repo()),
        "pipelines": lambda: list(c.list_pipeline()),
        "details": lambda: list(c.list_pipeline(details=True)),
        "history": lambda: list(c.list_pipeline(details=True, history=-1)),
    }
    small = {k: _count(queries, f) for k, f in calls.items()}
    c.create_pipeline("p0", transform=pps_pb2.Transform(cmd=["sh"], stdin=["true"]),
                      input=pfs("raw", "/*"), update=True)  # a second version for history
    _add(c, 2, 5)
    large = {k: _count(queries, f) for k, f in calls.items()}
    assert large == small, (small, large)
    assert small["repos"] <= 3 and small["details"] <= 4 and small["history"] <= 5
    assert len(list(c.list_pipeline())) == 7
    assert len(list(c.list_pipeline(history=-1))) == 8
    assert len(list(c.list_repo())) == 8


def test_memoised_infos_follow_changes(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("raw")
    put(c, "raw", {"a": "1"})
    _add(c, 0, 1)
    before = next(iter(c.inspect_pipeline("p0", details=True)))
    assert before.state == pps_pb2.PIPELINE_RUNNING and before.version == 1
    c.stop_pipeline("p0")
    assert [p.state for p in c.list_pipeline(details=True)] == [pps_pb2.PIPELINE_PAUSED]
    c.start_pipeline("p0")
    assert next(iter(c.inspect_pipeline("p0"))).state == pps_pb2.PIPELINE_RUNNING
    c.create_pipeline("p0", transform=pps_pb2.Transform(cmd=["sh"], stdin=["echo v2"]),
                      input=pfs("raw", "/*"), update=True)
    after = next(iter(c.inspect_pipeline("p0", details=True)))
    assert after.version == 2 and list(after.details.transform.stdin) == ["echo v2"]
    assert [p.version for p in c.list_pipeline(history=-1)] == [2, 1]
    size = {r.repo.name: r.size_bytes_upper_bound for r in c.list_repo()}["raw"]
    put(c, "raw", {"b": "22"})
    assert {r.repo.name: r.size_bytes_upper_bound for r in c.list_repo()}["raw"] == size + 2
    c.create_branch("raw", "dev")
    assert [b.name for b in c.inspect_repo("raw").branches] == ["dev", "master"]
