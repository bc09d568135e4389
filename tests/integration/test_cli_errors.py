"""Every command's common failures are one clear error line plus a hint, exit code 2, never a
traceback: no server, a bad address, a missing specs folder, a --source that is not a git repo,
an unknown branch, a missing file to load. Real git repos, real (absent) servers."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture(autouse=True)
def _short_rpc_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHSYNC_RPC_TIMEOUT", "10")


def _fails(capsys: Any, *argv: str) -> tuple[str, str]:
    """Run the CLI; it must exit 2 with exactly `error: ...` and `hint: ...`. Returns both."""
    code = main(list(argv))
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2, out
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), \
        out.err
    return lines[0], lines[1]


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "gitops"
    (repo / "specs").mkdir(parents=True)
    (repo / "specs" / "repos.yaml").write_text("repos: []\n")
    ident = ["-c", "user.name=T", "-c", "user.email=t@example.com"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], [*ident, "commit", "-qm", "init"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    return repo


@pytest.mark.parametrize("command", [
    ["status"], ["plan", "--specs", str(ROOT / "specs")], ["apply", "--specs", str(ROOT / "specs")],
    ["report", "--out", "{tmp}/r"],
])
def test_no_server(command: list[str], tmp_path: Path, capsys: Any) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    error, hint = _fails(capsys, *argv, "--pachd", UNREACHABLE)
    assert f"cannot reach pachd at grpc://{UNREACHABLE}" in error
    assert hint == "hint: is pachd running? check --pachd / PACHD_ADDRESS"


@pytest.mark.parametrize(("address", "said"), [
    ("bad://x", "invalid pachd address 'bad://x'"),
    ("localhost:notaport", "invalid port in pachd address"),
    ("grpc://user:pw@x:1", "invalid pachd address"),
])
def test_bad_address(address: str, said: str, capsys: Any) -> None:
    error, _ = _fails(capsys, "status", "--pachd", address)
    assert said in error


@pytest.mark.parametrize("command", ["plan", "apply", "demo", "validate"])
def test_missing_specs_folder(command: str, tmp_path: Path, capsys: Any) -> None:
    error, hint = _fails(capsys, command, "--specs", str(tmp_path / "nope"))
    assert "not found" in error and str(tmp_path / "nope") in error
    assert "--specs DIR" in hint


def test_source_that_is_not_a_git_repo(tmp_path: Path, capsys: Any) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    error, hint = _fails(capsys, "plan", "--source", str(plain), "--cache-dir",
                         str(tmp_path / "cache"), "--pachd", UNREACHABLE)
    assert "git fetch of" in error and "does not appear to be a git repository" in error
    assert "check --source" in hint


def test_unknown_branch(git_repo: Path, tmp_path: Path, capsys: Any) -> None:
    error, hint = _fails(capsys, "plan", "--source", str(git_repo), "--branch", "nope",
                         "--cache-dir", str(tmp_path / "cache"), "--pachd", UNREACHABLE)
    assert "couldn't find remote ref refs/heads/nope" in error
    assert hint == "hint: branch 'nope' does not exist in the source: check the branch name "\
        "(--branch)"


def test_specs_path_missing_in_the_source(git_repo: Path, tmp_path: Path, capsys: Any) -> None:
    code = main(["plan", "--source", str(git_repo), "--specs-path", "nope", "--cache-dir",
                 str(tmp_path / "cache"), "--pachd", UNREACHABLE])
    out = capsys.readouterr()
    assert code in (1, 2) and "Traceback" not in out.err
    assert "nope:0: specs directory not found" in out.err and "--specs-path" in out.err, out.err


def test_load_missing_file(tmp_path: Path, capsys: Any) -> None:
    error, hint = _fails(capsys, "load", "raw_data", str(tmp_path / "none.csv"), "--pachd",
                         UNREACHABLE)
    assert "no such file or directory" in error


def test_agent_without_a_source(capsys: Any) -> None:
    error, hint = _fails(capsys, "agent", "--once")
    assert "PACHSYNC_SOURCE" in hint


def test_load_into_a_missing_repo(localpachd: Any, tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "x.csv"
    data.write_text("1\n")
    error, hint = _fails(capsys, "load", "nosuchrepo", str(data), "--pachd", localpachd.address)
    assert "repo default/nosuchrepo not found (NOT_FOUND)" in error
    assert "`pachsync apply` creates the repos" in hint


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_bad_rpc_timeout_env(value: str, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHSYNC_RPC_TIMEOUT", value)
    error, _ = _fails(capsys, "status", "--pachd", UNREACHABLE)
    assert f"PACHSYNC_RPC_TIMEOUT='{value}' is not a positive number" in error


def test_agent_listen_port_in_use(tmp_path: Path, capsys: Any) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        error, hint = _fails(capsys, "agent", "--source", str(tmp_path), "--listen",
                             f"127.0.0.1:{port}", "--pachd", UNREACHABLE)
    assert f"cannot listen on 127.0.0.1:{port}" in error and "PACHSYNC_LISTEN" in hint


def test_report_into_an_unwritable_place(localpachd: Any, tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "afile").write_text("x")
    error, hint = _fails(capsys, "report", "--pachd", localpachd.address, "--out",
                         str(tmp_path / "afile" / "r"))
    assert "cannot write the report into" in error and "--out DIR" in hint


def test_demo_data_dir_that_is_a_file(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "afile").write_text("x")
    error, hint = _fails(capsys, "demo", "--data-dir", str(tmp_path / "afile"))
    assert "cannot use" in error and "--data-dir" in hint


def test_localpachd_data_dir_that_is_a_file(tmp_path: Path) -> None:
    import sys

    (tmp_path / "afile").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "localpachd", "serve", "--port", "0",
                           "--data-dir", str(tmp_path / "afile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"localpachd: cannot use {tmp_path / 'afile'}: File exists "
                                   "(check --data-dir / --tls-cert / --tls-key)")


# `--specs FILE` (e.g. `--specs README.md`) says the path is a file, not a folder, instead of
# "not found"; a missing path still says "not found".

def _error_lines(capsys: Any, *argv: str) -> list[str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 2, out
    return out.err.strip().splitlines()


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "demo"])
def test_specs_that_is_a_file(command: str, tmp_path: Path, capsys: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("README.md").write_text("# not specs\n")
    argv = [command, "--specs", "README.md"]
    if command in ("plan", "apply"):
        argv += ["--pachd", "127.0.0.1:1"]  # never reached: the specs are checked first
    lines = _error_lines(capsys, *argv)
    assert len(lines) == 2, lines
    assert lines[0] == "error: specs path 'README.md' is a file, not a folder"
    assert lines[1].startswith("hint: pass --specs DIR, the folder holding repos.yaml")


def test_missing_specs_still_says_not_found(tmp_path: Path, capsys: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = _error_lines(capsys, "validate", "--specs", "nope")
    assert lines[0] == "error: specs folder 'nope' not found"
