"""Races between deleting pipelines and their running or starting jobs end the job cleanly: no
traceback in the server's log, no exception escaping a thread, the engine idle afterwards.

Each race is driven deterministically. "While a job runs": its datum writes a marker file and
then blocks until a flag file appears (it never does: the delete kills it); the runtime's
answer for the killed datum is held (a fault injected into our own runtime wrapper) until the
pipeline's log directory is gone, so the worker's last log line always comes after it. "While a job
starts": the job run is held just before it plans its datums (a fault injected into our own
`JobRun._plan`) until the delete has committed. Both deletes are tried: DeletePipeline and
DeleteAll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.wait import wait_for
from lpd_pps_helpers import pfs, put, sh_pipeline

from localpachd import jobrun
from localpachd.server import RunningServer

Delete = Callable[[Any], None]
DELETES: dict[str, Delete] = {
    "delete_pipeline": lambda client: client.delete_pipeline("p"),
    "delete_all": lambda client: client.delete_all_pipelines(),
}


@pytest.fixture
def thread_errors() -> Iterator[list[str]]:
    """Exceptions that escaped any thread while the test ran."""
    seen: list[str] = []
    before = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        seen.append(f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}")

    threading.excepthook = hook
    yield seen
    threading.excepthook = before


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.exc_info or r.levelno >= logging.ERROR]  # fmt: skip


def _idle(server: RunningServer) -> bool:
    engine = server.ctx.pps_engine
    with engine._lock:
        return not engine._active


def _blocking_pipeline(client: Any, tmp_path: Path) -> Path:
    started = tmp_path / "started"
    never = tmp_path / "never"
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    block = f"i=0; while [ ! -e {never} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
    sh_pipeline(client, "p", pfs("data", "/*"), "echo before", f"touch {started}", block)
    return started


@pytest.mark.parametrize("delete", sorted(DELETES))
def test_delete_while_a_job_runs_ends_it_without_a_traceback(
    localpachd: RunningServer, pach_client: Any, tmp_path: Path, delete: str,
    caplog: pytest.LogCaptureFixture, thread_errors: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    logs_dir = localpachd.ctx.store.data_dir / "pps_logs" / "default" / "p"
    runtime = localpachd.ctx.pps_engine.runtime
    run = runtime.run

    def late(datum: Any) -> Any:
        outcome = run(datum)
        wait_for(lambda: not logs_dir.exists(), "the deleted pipeline's logs to be removed")
        return outcome

    monkeypatch.setattr(runtime, "run", late)
    started = _blocking_pipeline(pach_client, tmp_path)
    wait_for(started.exists, "the datum to start")
    DELETES[delete](pach_client)
    wait_for(lambda: _idle(localpachd), "the deleted pipeline's job thread to end")
    assert _tracebacks(caplog) == []
    assert thread_errors == []
    assert list(pach_client.list_pipeline()) == []
    assert not logs_dir.exists(), "the killed datum's log re-created the deleted log dir"


@pytest.mark.parametrize("delete", sorted(DELETES))
def test_delete_while_a_job_starts_ends_it_without_a_traceback(
    localpachd: RunningServer, pach_client: Any, tmp_path: Path, delete: str,
    caplog: pytest.LogCaptureFixture, thread_errors: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    entered, release = threading.Event(), threading.Event()
    plan = jobrun.JobRun._plan

    def held(self: jobrun.JobRun) -> Any:
        entered.set()
        assert release.wait(120), "the test never released the job"
        return plan(self)

    monkeypatch.setattr(jobrun.JobRun, "_plan", held)
    _blocking_pipeline(pach_client, tmp_path)
    wait_for(entered.is_set, "the job to start")
    DELETES[delete](pach_client)
    release.set()
    wait_for(lambda: _idle(localpachd), "the deleted pipeline's job thread to end")
    assert _tracebacks(caplog) == []
    assert thread_errors == []
    assert list(pach_client.list_pipeline()) == []
