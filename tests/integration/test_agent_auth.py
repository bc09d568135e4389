"""Auth tokens reach pachd from PACH_PYTHON_AUTH_TOKEN or a token file, and are never printed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main

TOKEN = "s3cret-token-value"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Any]:
    from localpachd.server import start

    server = start(data_dir=tmp_path / "pachd", port=0, auth_token=TOKEN)
    try:
        yield server
    finally:
        server.stop()


def test_token_from_env_or_file(secured: Any, tmp_path: Path, capsys: Any,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["status", "--pachd", secured.address, "--format", "json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "PACH_PYTHON_AUTH_TOKEN" in err and TOKEN not in err
    monkeypatch.setenv("PACH_PYTHON_AUTH_TOKEN", TOKEN)
    assert main(args) == 0
    monkeypatch.delenv("PACH_PYTHON_AUTH_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("PACHSYNC_AUTH_TOKEN_FILE", str(token_file))
    assert main(args) == 0
    assert TOKEN not in capsys.readouterr().out
