"""The command table of `pachsync` (agent.cli.COMMANDS) and what the commands share: every
module of agent/commands is a registered command, a typo in the table fails loudly instead of
dropping a command, and commands reach pachd only through `agent.cluster.client.connected`,
the one context manager that resolves the address, connects and always closes."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from agent import cli
from agent.cluster.client import connected

ROOT = Path(__file__).resolve().parents[2]
COMMANDS_DIR = ROOT / "agent" / "commands"


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_every_command_module_is_in_the_table_and_registers() -> None:
    modules = sorted(p.stem for p in COMMANDS_DIR.glob("*.py") if not p.stem.startswith("_"))
    assert sorted(cli.COMMANDS) == modules
    assert _subcommands(cli.build_parser()) == [c.replace("_", "-") for c in cli.COMMANDS]


@pytest.mark.parametrize("typo", ["statsu", "bump-image", "Plan"])
def test_a_typo_in_the_command_table_fails_loudly(monkeypatch: pytest.MonkeyPatch,
                                                  typo: str) -> None:
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, typo))
    with pytest.raises(ModuleNotFoundError, match=typo):
        cli.build_parser()


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


# demo.py connects to the localpachd it started; it is another helper's file for now.
USERS = [p for p in sorted(COMMANDS_DIR.glob("*.py")) if p.name != "demo.py"] + [
    ROOT / "agent/sync.py", ROOT / "agent/report/collect.py"]


@pytest.mark.parametrize("path", USERS, ids=lambda p: p.name)
def test_commands_and_sync_connect_only_through_the_context_manager(path: Path) -> None:
    assert _calls(path, "connect") == [], f"{path.name}: use `with connected(...)`"


def test_the_connection_is_closed_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), connected("grpc://127.0.0.1:9") as conn:
        kept = conn
        raise RuntimeError("boom")
    with pytest.raises(ValueError, match="Channel closed"):
        list(kept.client.list_repo())
