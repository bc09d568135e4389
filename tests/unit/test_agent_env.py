"""`pachsync agent` takes its configuration from PACHSYNC_* env vars when a flag is not given
(so the Kubernetes Deployment needs no shell wrapper); a flag always wins; empty = unset; a bad
value is one clear usage error naming the variable; `--help` shows each variable and default."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from runner_fakes import FakeSync, Step

import agent.sync
from agent.cli import build_parser, main
from agent.commands.agent import ENV_DEFAULTS, apply_env, register
from agent.errors import UsageError

ENV = {"PACHSYNC_SOURCE": "https://git.example/r.git", "PACHSYNC_BRANCH": "prod",
       "PACHSYNC_SPECS_PATH": "deploy/specs", "PACHSYNC_INTERVAL": "15",
       "PACHSYNC_PRUNE": "true", "PACHSYNC_LISTEN": "127.0.0.1:9000",
       "PACHSYNC_LOG_FORMAT": "json"}


def _args(*argv: str, env: dict[str, str]) -> Any:
    return apply_env(build_parser().parse_args(["agent", *argv]), env)


def test_env_fills_every_unset_flag() -> None:
    a = _args(env=ENV)
    assert (a.source, a.branch, a.specs_path, a.interval, a.prune, a.listen, a.log_format) == (
        "https://git.example/r.git", "prod", "deploy/specs", 15.0, True, "127.0.0.1:9000", "json")


def test_flags_win_over_env() -> None:
    a = _args("--source", "/repo", "--branch", "main", "--specs-path", "specs", "--interval",
              "5", "--no-prune", "--listen", "0.0.0.0:1", "--log-format", "text", env=ENV)
    assert (a.source, a.branch, a.specs_path, a.interval, a.prune, a.listen, a.log_format) == (
        "/repo", "main", "specs", 5.0, False, "0.0.0.0:1", "text")
    assert _args("--prune", env={**ENV, "PACHSYNC_PRUNE": "false"}).prune is True


def test_defaults_without_env_and_empty_means_unset() -> None:
    empty = dict.fromkeys(ENV, "")
    a = _args("--source", "/repo", env=empty)
    assert (a.branch, a.specs_path, a.interval, a.prune, a.listen, a.log_format) == (
        "main", "specs", 60.0, False, "0.0.0.0:8080", "text")


@pytest.mark.parametrize(("var", "value", "said"), [
    ("PACHSYNC_INTERVAL", "soon", "is not a number of seconds"),
    ("PACHSYNC_PRUNE", "maybe", "is not true or false"),
    ("PACHSYNC_LOG_FORMAT", "xml", "is not text or json"),
])
def test_bad_env_values_are_usage_errors(var: str, value: str, said: str) -> None:
    with pytest.raises(UsageError, match=f"{var}='{value}' {said}") as err:
        _args(env={**ENV, var: value})
    assert err.value.hint and var in err.value.hint


@pytest.mark.parametrize("value", ["FALSE", "0", "no", "off"])
def test_false_spellings(value: str) -> None:
    assert _args(env={**ENV, "PACHSYNC_PRUNE": value}).prune is False


def test_missing_source_is_one_line_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--once"]) == 2
    err = capsys.readouterr().err
    assert "no git source to follow" in err and "PACHSYNC_SOURCE" in err
    assert "Traceback" not in err


def test_once_runs_with_the_env_configuration(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    seen: list[agent.sync.SyncOptions] = []
    fake = FakeSync(head="abc123", steps=[Step("unchanged")])

    def record(opts: agent.sync.SyncOptions) -> agent.sync.SyncResult:
        seen.append(opts)
        return fake(opts)

    monkeypatch.setattr(agent.sync, "sync_once", record)
    for key, value in {**ENV, "PACHSYNC_SOURCE": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    assert main(["agent", "--once"]) == 0
    (opts,) = seen
    assert (opts.source, opts.branch, opts.specs_path, opts.prune) == (
        str(tmp_path), "prod", "deploy/specs", True)


# `pachsync agent --help` shows, for every flag with an env default, its env var and its
# default value, taken from the same table the agent reads.

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
