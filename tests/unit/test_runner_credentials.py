"""Credentials come from files or env only; git tokens travel as a host-scoped header."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent.errors import UsageError
from agent.runner.credentials import (
    git_auth_env,
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


def test_git_token_becomes_a_header_for_the_source_host_only() -> None:
    env = git_auth_env("https://dev.azure.com/org/p/_git/gitops", "tok", "me",
                       {"GIT_CONFIG_COUNT": "1"})
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert env["GIT_CONFIG_KEY_1"] == "http.https://dev.azure.com/.extraHeader"
    value = env["GIT_CONFIG_VALUE_1"]
    assert value == "Authorization: Basic " + base64.b64encode(b"me:tok").decode()
    assert git_auth_env("/local/path", "tok", "me", {}) == {}
    assert git_auth_env("git@host:repo.git", "tok", "me", {}) == {}


def test_redact_url() -> None:
    assert redact_url("https://user:tok@host:8443/r.git") == "https://***@host:8443/r.git"
    assert redact_url("https://host/r.git") == "https://host/r.git"
    assert redact_url("/srv/git/repo") == "/srv/git/repo"
