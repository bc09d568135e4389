"""A credential that is given but empty or blank is an error, never "no credential".

An empty PACHSYNC_WEBHOOK_SECRET or a token file holding only a newline (a secret created with
`--from-literal=token=`) used to read as "not configured" — for the webhook secret that means no
signature check. Each secret, from its file or its environment variable, must stop the agent
with exit 2 and a message naming where it came from; unset stays "not used". One real
`pachsync agent` subprocess shows the whole path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import UsageError
from agent.runner.credentials import load_credentials

PACHSYNC = Path(sys.executable).parent / "pachsync"
BLANKS = ["", " ", "\n", "\r\n", " \t \n"]
ENV_VARS = ["PACHSYNC_WEBHOOK_SECRET", "PACHSYNC_BASIC_AUTH", "PACHSYNC_GIT_TOKEN",
            "PACH_PYTHON_AUTH_TOKEN"]
FILE_ARGS = ["webhook_secret_file", "basic_auth_file", "git_token_file", "pach_token_file"]


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize("var", ENV_VARS)
def test_a_blank_environment_variable_is_an_error(var: str, blank: str) -> None:
    with pytest.raises(UsageError, match=f"{var} is set but empty") as err:
        load_credentials(env={var: blank})
    assert "unset it" in err.value.hint


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize("arg", FILE_ARGS)
def test_a_blank_secret_file_is_an_error(arg: str, blank: str, tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(blank)
    with pytest.raises(UsageError, match=f"{path} is empty"):
        load_credentials(**{arg: path}, env={})  # type: ignore[arg-type]


def test_unset_means_unused_and_real_values_are_kept(tmp_path: Path) -> None:
    assert load_credentials(env={}).values() == ()
    token = tmp_path / "token"
    token.write_text("  t0k  \n")  # only the line end is dropped: spaces may be part of it
    creds = load_credentials(git_token_file=token, env={"PACHSYNC_WEBHOOK_SECRET": "s3"})
    assert creds.git_token == "  t0k  " and creds.webhook_secret == "s3"


def test_the_agent_refuses_to_start_with_a_blank_webhook_secret(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PACHSYNC_WEBHOOK_SECRET": ""}
    done = subprocess.run([str(PACHSYNC), "agent", "--source", str(tmp_path), "--once"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "PACHSYNC_WEBHOOK_SECRET is set but empty" in done.stderr
    assert "Traceback" not in done.stderr
