"""Credentials come from files or env only, never from flags; repr never shows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import UsageError
from agent.runner.credentials import (
    load_credentials,
    redact_url,
)


def test_files_win_over_env_and_newlines_are_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    auth = tmp_path / "auth"
    auth.write_text("azure:pa:ss\n")
    env = {"PACHSYNC_WEBHOOK_SECRET": "from-env", "PACHSYNC_GIT_TOKEN": "gt",
           "PACH_PYTHON_AUTH_TOKEN": "pt"}
    creds = load_credentials(secret, auth, env=env)
    assert creds.webhook_secret == "from-file"
    assert creds.basic_auth is not None and creds.basic_auth.password == "pa:ss"
    assert creds.git_token == "gt" and creds.pach_token == "pt"
    assert set(creds.values()) == {"from-file", "pa:ss", "gt", "pt"}
    assert "from-file" not in repr(creds) and "pa:ss" not in repr(creds)


def test_missing_or_empty_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read webhook secret file"):
        load_credentials(tmp_path / "nope", env={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        load_credentials(tmp_path / "empty", env={})
    with pytest.raises(UsageError, match="user:password"):
        load_credentials(env={"PACHSYNC_BASIC_AUTH": "no-colon"})


def test_redact_url() -> None:
    assert redact_url("https://user:tok@host:8443/r.git") == "https://***@host:8443/r.git"
    assert redact_url("https://host/r.git") == "https://host/r.git"
    assert redact_url("/srv/git/repo") == "/srv/git/repo"
