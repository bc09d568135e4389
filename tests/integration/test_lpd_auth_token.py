"""`localpachd serve`'s auth token: from --auth-token-file or LOCALPACHD_AUTH_TOKEN (kept out of
/proc/PID/cmdline), or --auth-token; an empty or blank token is refused (exit 2) instead of
silently serving without auth. Real `python -m localpachd serve` subprocesses, the real
python-pachyderm client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import python_pachyderm
from helpers.pachd import HOST, LISTENING, stop

TOKEN = "lpd-Token-7f3a9c"


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LOCALPACHD_AUTH_TOKEN"}
    env.update(extra)
    return env


def _argv(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "localpachd", "serve", "--port", "0", "--data-dir",
            str(data_dir), *args]


@contextmanager
def serving(data_dir: Path, *args: str, env: Mapping[str, str] = {}
            ) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(_argv(data_dir, *args), env=_env(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        seen = []
        for line in proc.stdout:  # pytest's timeout guards a server that never comes up
            seen.append(line)
            match = LISTENING.search(line)
            if match:
                yield proc, int(match.group(1))
                return
        raise AssertionError(f"localpachd did not start: {''.join(seen)}")
    finally:
        stop(proc)
        proc.stdout.close()


def refused(data_dir: Path, *args: str, env: Mapping[str, str] = {}) -> tuple[int, str]:
    """A serve that must exit at once: its exit code and output. One that starts listening
    instead is stopped at once and fails the test (no waiting for a timeout)."""
    proc = subprocess.Popen(_argv(data_dir, *args), env=_env(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    with proc.stdout:
        out = []
        for line in proc.stdout:
            out.append(line)
            if LISTENING.search(line):
                stop(proc)
                raise AssertionError(f"localpachd served with {args} {dict(env)}: {out}")
    return proc.wait(timeout=120), "".join(out)


def assert_token_required(port: int) -> None:
    for token in (None, "wrong", TOKEN + "x"):
        client = python_pachyderm.Client(host=HOST, port=port, auth_token=token)
        with pytest.raises(grpc.RpcError) as err:
            list(client.list_repo())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    good = python_pachyderm.Client(host=HOST, port=port, auth_token=TOKEN)
    good.create_repo("ok")
    assert [r.repo.name for r in good.list_repo()] == ["ok"]


def test_token_from_a_file_is_required_and_not_on_the_command_line(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # a trailing newline, as `echo` and secrets write it
    with serving(tmp_path / "d", "--auth-token-file", str(token_file)) as (proc, port):
        assert_token_required(port)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert TOKEN.encode() not in cmdline and b"--auth-token-file" in cmdline


def test_token_from_the_environment_is_required(tmp_path: Path) -> None:
    with serving(tmp_path / "d", env={"LOCALPACHD_AUTH_TOKEN": TOKEN}) as (proc, port):
        assert_token_required(port)
        assert TOKEN.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()


def test_the_flag_still_works_and_wins_over_the_environment(tmp_path: Path) -> None:
    with serving(tmp_path / "d", "--auth-token", TOKEN,
                 env={"LOCALPACHD_AUTH_TOKEN": "other"}) as (_, port):
        assert_token_required(port)


@pytest.mark.parametrize("blank", ["", " ", "\t", "\n", " \r\n "])
def test_a_blank_token_is_refused_from_every_source(tmp_path: Path, blank: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(blank)
    cases = [(["--auth-token", blank], {}, "--auth-token"),
             (["--auth-token-file", str(token_file)], {}, str(token_file)),
             ([], {"LOCALPACHD_AUTH_TOKEN": blank}, "LOCALPACHD_AUTH_TOKEN")]
    for args, env, named in cases:
        code, out = refused(tmp_path / "d", *args, env=env)
        assert code == 2 and "empty" in out and named in out, (args, env, out)
        assert "Traceback" not in out


def test_unusable_token_sources_are_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    missing = refused(tmp_path / "d", "--auth-token-file", str(tmp_path / "nope"))
    assert missing[0] == 2 and "nope" in missing[1]
    both = refused(tmp_path / "d", "--auth-token", TOKEN, "--auth-token-file", str(token_file))
    assert both[0] == 2 and "not allowed with" in both[1]
    control = refused(tmp_path / "d", "--auth-token", "a\x01b")  # not sendable as gRPC metadata
    assert control[0] == 2 and "printable" in control[1]
    for _, out in (missing, both, control):
        assert "Traceback" not in out and TOKEN not in out


def test_help_says_the_flag_is_visible_to_other_users() -> None:
    out = subprocess.run([sys.executable, "-m", "localpachd", "serve", "--help"],
                         capture_output=True, text=True, check=True).stdout
    flat = " ".join(out.split())
    assert "--auth-token-file" in flat and "LOCALPACHD_AUTH_TOKEN" in flat
    assert "visible to other local users" in flat


@pytest.mark.parametrize("blank", ["", " ", "\n\t"])
def test_the_embedded_server_refuses_a_blank_token(tmp_path: Path, blank: str) -> None:
    """`start()` (what tests, demo and embedders call) refuses a blank token before binding."""
    from localpachd.server import start

    with pytest.raises(ValueError, match="empty or blank"):
        start(data_dir=tmp_path / "d", auth_token=blank)
    assert not (tmp_path / "d").exists()  # nothing was created
