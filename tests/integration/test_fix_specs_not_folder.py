"""`--specs FILE` (e.g. `--specs README.md`) says the path is a file, not a folder, instead of
"not found"; a missing path still says "not found". Exit 2, one error line plus a hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.cli import main


@pytest.fixture(autouse=True)
def _short_rpc_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHSYNC_RPC_TIMEOUT", "10")


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
