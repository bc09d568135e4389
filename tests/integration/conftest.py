"""Fixtures shared by several integration test files (the top tests/conftest.py has the
in-process `localpachd` and `pach_client`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.pachd import LocalPachdProcess


@pytest.fixture
def pachd_process(tmp_path: Path) -> Iterator[LocalPachdProcess]:
    """A started `python -m localpachd serve` subprocess on a free port; stopped at the end."""
    server = LocalPachdProcess(tmp_path / "pachd")
    server.start()
    try:
        yield server
    finally:
        server.stop()
