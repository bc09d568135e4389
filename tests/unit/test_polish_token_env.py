"""An empty PACH_PYTHON_AUTH_TOKEN (CI maps unset secret variables to "") means "no token".

python-pachyderm itself falls back to that variable when given no token, so both the address
resolution and the client we build must treat "" (or blanks) as unset and send no `authn-token`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cluster.address import resolve
from agent.cluster.client import connect


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
