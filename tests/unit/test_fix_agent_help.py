"""`pachsync agent --help` shows, for every flag with an env default (--interval, --specs-path,
...), its env var and its default value, taken from the same table the agent reads."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from agent.commands.agent import ENV_DEFAULTS, register


def _help_by_dest() -> dict[str, str]:
    parser = argparse.ArgumentParser(prog="pachsync")
    register(parser.add_subparsers())
    sub: Any = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help or "" for a in sub.choices["agent"]._actions}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("dest", [d for d, (_, default) in ENV_DEFAULTS.items()
                                  if default is not None])
def test_help_shows_env_var_and_default(dest: str) -> None:
    var, default = ENV_DEFAULTS[dest]
    text = " ".join(_help_by_dest()[dest].split())
    assert f"env {var}" in text and f"default: {_shown(default)}" in text, text


def test_interval_and_specs_path_in_the_rendered_help(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["agent", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--interval SECONDS seconds between syncs (env PACHSYNC_INTERVAL; default: 60)" in text
    assert "--specs-path DIR specs folder in the repo (env PACHSYNC_SPECS_PATH; default: specs)" \
        in text
