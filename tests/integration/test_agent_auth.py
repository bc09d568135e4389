"""Auth tokens reach pachd from PACH_PYTHON_AUTH_TOKEN or a token file, and are never printed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.cluster.address import resolve
from agent.cluster.client import connect

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


# An empty PACH_PYTHON_AUTH_TOKEN (CI maps unset secret variables to "") means "no token":
# python-pachyderm falls back to that variable when given none, so both the address resolution
# and the client we build treat "" (or blanks) as unset and send no `authn-token`.

@pytest.mark.parametrize("value", ["", "  ", "\n"])
def test_empty_env_token_is_no_token(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACH_PYTHON_AUTH_TOKEN", value)
    target = resolve("localhost:1")
    assert target.auth_token is None
    assert "token set" not in target.describe()
    conn = connect(target)
    try:
        assert conn.client.auth_token is None
        assert [k for k, _ in conn.client._metadata] == []  # no authn-token header at all
    finally:
        conn.close()


def test_empty_env_token_falls_through_to_the_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("filetoken\n")
    env = {"PACH_PYTHON_AUTH_TOKEN": "", "PACHSYNC_AUTH_TOKEN_FILE": str(token_file)}
    assert resolve("h:1", env).auth_token == "filetoken"


def test_a_real_env_token_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACH_PYTHON_AUTH_TOKEN", "secret")
    conn = connect(resolve("localhost:1"))
    try:
        assert ("authn-token", "secret") in conn.client._metadata
    finally:
        conn.close()
