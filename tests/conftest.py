"""Shared fixtures: a real localpachd on port 0 in a temp dir, and a real python-pachyderm client.

Feature-specific fixtures live in the test files that use them or in a `conftest.py` of their own
folder. Helpers used by several test files (git remotes, localpachd as a subprocess, waiting for
jobs, PFS reads and writes, the iris data) live in tests/helpers/, importable as `helpers.*`
because this file's folder is on sys.path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]

# Property-based fuzz tests (marked `fuzz`): bounded in `make test`, long in `make fuzz`.
# No deadline per example: CI shares two cores, and "bounded time" is asserted by the tests
# themselves through counts and limits, never by the wall clock.
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture
def localpachd(tmp_path: Path) -> Iterator[object]:
    """A real localpachd server in this process, on a free port, storing under tmp_path."""
    from localpachd.server import start

    server = start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pach_client(localpachd: object) -> object:
    """The unmodified python-pachyderm client connected to the `localpachd` fixture."""
    import python_pachyderm

    return python_pachyderm.Client(host=localpachd.host, port=localpachd.port)  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_user_pach_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's ~/.pachyderm config or PACHD_ADDRESS."""
    monkeypatch.setenv("PACH_CONFIG", str(tmp_path / "no-pach-config.json"))
    monkeypatch.delenv("PACHD_ADDRESS", raising=False)
    monkeypatch.delenv("PACH_PYTHON_AUTH_TOKEN", raising=False)
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _restore_pfs_mode() -> Iterator[None]:
    """localpachd finds its /pfs mode once per process (`runtime_pfsmount.mode()`, cached): a
    test that starts a server under LOCALPACHD_PFS_MODE=rewrite would leave every later test of
    this worker in rewrite mode (namespace tests then skipped). Put the cache back as it was."""
    from localpachd import runtime_pfsmount

    found = runtime_pfsmount._found
    before = list(found)
    yield
    found[:] = before


@pytest.fixture(autouse=True)
def _restore_logging_and_hooks() -> Iterator[None]:
    """An in-process `pachsync agent` run (`main([...])`) installs handlers on the root,
    `pachsync` and `apscheduler` loggers, captures warnings and replaces the exception hooks,
    all bound to that test's captured stream. Put everything back, so a later test's log line
    never goes to a closed stream ("--- Logging error ---")."""
    import logging
    import sys
    import threading
    import warnings

    names = ("", "pachsync", "apscheduler", "py.warnings")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    hooks = (sys.excepthook, threading.excepthook, warnings.showwarning)
    try:
        yield
    finally:
        for n, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(n)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook, warnings.showwarning = hooks
