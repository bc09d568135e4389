"""`pachsync agent`'s feedback settings: the Azure DevOps token and notify secret come from env
or a file (and are redacted from logs), a token for a source that is not on Azure DevOps or a
--notify-url without a secret is a usage error saying what to do, nothing configured = off."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.commands import agent as agent_cmd
from agent.errors import UsageError
from agent.notify.notifier import NotifyConfig, build_notifier
from agent.runner.credentials import load_credentials

AZ = "https://dev.azure.com/org/proj/_git/specs"


def nothing(target: str, why: str) -> None:
    pass


def test_off_when_nothing_is_configured() -> None:
    assert build_notifier(NotifyConfig(source=AZ, branch="main"), nothing) is None


def test_token_for_a_source_off_azure_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not an Azure DevOps git URL") as info:
        build_notifier(NotifyConfig(source="https://github.com/o/r", branch="main",
                                    azure_token="t"), nothing, public_source="github.com/o/r")
    assert "PACHSYNC_AZURE_TOKEN" in (info.value.hint or "")


def test_notify_url_needs_a_secret() -> None:
    with pytest.raises(UsageError, match="no secret"):
        build_notifier(NotifyConfig(source=AZ, branch="main",
                                    notify_urls=("http://127.0.0.1:9/x",)), nothing)


def test_targets_one_per_url_and_azure() -> None:
    notifier = build_notifier(NotifyConfig(
        source=AZ, branch="main", azure_token="t", notify_urls=("http://a/x", "http://b/y"),
        notify_secret="s"), nothing)
    assert notifier is not None
    try:
        assert [d.target for d, _ in notifier.targets] == [
            "azure-devops", "sink http://a/x", "sink http://b/y"]
    finally:
        notifier.stop()


def test_token_and_secret_from_env_or_file(tmp_path: Path) -> None:
    env = {"PACHSYNC_AZURE_TOKEN": "from-env", "PACHSYNC_NOTIFY_SECRET": "sig"}
    creds = load_credentials(env=env)
    assert (creds.azure_token, creds.notify_secret) == ("from-env", "sig")
    assert {"from-env", "sig"} <= set(creds.values())
    token = tmp_path / "token"
    token.write_text("from-file\n")
    creds = load_credentials(env=env, azure_token_file=token)
    assert creds.azure_token == "from-file" and "from-file" in creds.values()
    with pytest.raises(UsageError, match="PACHSYNC_AZURE_TOKEN"):
        load_credentials(env={"PACHSYNC_AZURE_TOKEN": " "})


def test_flags_parse() -> None:
    parser = argparse.ArgumentParser()
    agent_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["agent", "--notify-url", "http://a", "--notify-url", "http://b",
                              "--azure-api-url", "https://tfs/coll", "--azure-token-file", "t"])
    assert args.notify_url == ["http://a", "http://b"] and args.azure_api_url == "https://tfs/coll"
    assert args.azure_token_file == Path("t")


def test_command_wires_the_notifier_to_the_failure_metric() -> None:
    from helpers.standin import stand_in

    from agent.runner.credentials import Credentials
    from agent.runner.metrics import AgentMetrics

    metrics = AgentMetrics("s", "main")
    with stand_in() as stand:
        stand.mode = "fail"
        args = argparse.Namespace(source=AZ, branch="main", azure_api_url=stand.url,
                                  status_target_url=None, notify_url=[])
        notifier = agent_cmd._notifier(args, Credentials(azure_token="t"), metrics)
        assert notifier is not None
        notifier.targets[0][0].policy = notifier.targets[0][0].policy.__class__(
            attempts=1, base_s=0.01)
        try:
            notifier.started("c" * 40)
            assert notifier.wait_idle(30)
        finally:
            notifier.stop()
    assert metrics.notifications_failed.labels(target="azure-devops")._value.get() == 1
