"""agent.cluster.address: --pachd, PACHD_ADDRESS, pachctl config, in-cluster env, default."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from agent.cluster.address import parse_address, resolve
from agent.errors import UsageError


def _config(tmp_path: Path, address: str, token: str | None = None) -> str:
    ctx: dict[str, str] = {"pachd_address": address}
    if token:
        ctx["session_token"] = token
        ctx["server_cas"] = base64.b64encode(b"PEM").decode()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"v2": {"active_context": "c", "contexts": {"c": ctx}}}))
    return str(path)


def test_order_flag_env_config_incluster_default(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "grpcs://cfg.example:31400", token="cfgtoken")
    env = {"PACH_CONFIG": cfg, "PACHD_ADDRESS": "env.example:1",
           "PACHD_PEER_SERVICE_HOST": "peer", "PACHD_PEER_SERVICE_PORT": "653"}
    assert resolve("flag.example:2", env).host == "flag.example"
    assert resolve(None, env).origin == "PACHD_ADDRESS"
    env.pop("PACHD_ADDRESS")
    t = resolve(None, env)
    assert (t.host, t.port, t.tls, t.auth_token, t.root_certs) == (
        "cfg.example", 31400, True, "cfgtoken", b"PEM")
    env["PACH_CONFIG"] = str(tmp_path / "missing.json")
    t = resolve(None, env)
    assert (t.host, t.port, t.origin.startswith("in-cluster")) == ("peer", 653, True)
    assert resolve(None, {"PACH_CONFIG": str(tmp_path / "missing.json")}).address == \
        "grpc://localhost:30650"


def test_token_from_env_or_file_never_printed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("filetoken\n")
    t = resolve("h:1", {"PACHSYNC_AUTH_TOKEN_FILE": str(token_file)})
    assert t.auth_token == "filetoken"
    assert "filetoken" not in repr(t) and "filetoken" not in t.describe()
    assert resolve("h:1", {"PACH_PYTHON_AUTH_TOKEN": "envtoken"}).auth_token == "envtoken"


@pytest.mark.parametrize("text,expected", [
    ("grpcs://pachd.example:443", ("pachd.example", 443, True)),
    ("https://pachd.example", ("pachd.example", 30650, True)),
    ("grpc://10.0.0.1:30650/", ("10.0.0.1", 30650, False)),
    ("localhost:1234", ("localhost", 1234, False)),
])
def test_parse_address(text: str, expected: tuple[str, int, bool]) -> None:
    t = parse_address(text, "test")
    assert (t.host, t.port, t.tls) == expected


@pytest.mark.parametrize("bad", ["ftp://x:1", "grpc://user:pw@x:1", "grpc://x:1/path"])
def test_bad_addresses_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_address(bad, "test")
