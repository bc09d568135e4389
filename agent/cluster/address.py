"""Where pachd is and how to authenticate: the resolution order every command shares.

Called by `agent.cluster.client.connect` (so by sync, status, load and the agent loop).
Order: the `--pachd` flag, else `PACHD_ADDRESS` (as pachctl reads it), else python-pachyderm's
own config (`PACH_CONFIG`, `/pachctl/config.json`, `~/.pachyderm/config.json`: active context's
`pachd_address`, `session_token`, `server_cas`), else the in-cluster service env
(`PACHD_PEER_SERVICE_HOST/PORT`, then `PACHD_SERVICE_HOST/PORT`), else `localhost:30650`.
The token comes from `PACH_PYTHON_AUTH_TOKEN`, else the file named by `PACHSYNC_AUTH_TOKEN_FILE`,
else the config's session token; an empty or blank variable counts as unset. `grpcs://` (or
`https://`) turns TLS on; the CA bundle it trusts is `PACHSYNC_CA_FILE` (PEM), else the config's
`server_cas`, else the system/certifi CAs. Tokens are never part of `str()`/`describe()` output.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from agent.errors import UsageError

DEFAULT_PORT = 30650
CONFIG_PATHS = ("/pachctl/config.json", "~/.pachyderm/config.json")


@dataclass(frozen=True)
class PachdTarget:
    host: str
    port: int
    tls: bool = False
    origin: str = "default"  # which rule of the resolution order chose it
    auth_token: str | None = field(default=None, repr=False)
    root_certs: bytes | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{'grpcs' if self.tls else 'grpc'}://{self.host}:{self.port}"

    def describe(self) -> str:
        auth = ", token set" if self.auth_token else ""
        return f"{self.address} (from {self.origin}{auth})"


def parse_address(text: str, origin: str) -> PachdTarget:
    """`host:port`, `host`, `grpc://host:port`, `grpcs://…`, `http(s)://…` -> PachdTarget."""
    raw = text.strip()
    url = urlparse(raw if "://" in raw else f"grpc://{raw}")
    if url.scheme not in ("grpc", "grpcs", "http", "https") or not url.hostname:
        raise UsageError(f"invalid pachd address {text!r} (from {origin})",
                         hint="use host:port, grpc://host:port or grpcs://host:port")
    if url.path not in ("", "/") or url.username or url.password:
        raise UsageError(f"invalid pachd address {text!r} (from {origin})",
                         hint="no path or credentials in the address; tokens go in env or files")
    try:
        port = url.port or DEFAULT_PORT
    except ValueError as exc:
        raise UsageError(f"invalid port in pachd address {text!r} (from {origin})",
                         hint="the port is a number from 1 to 65535, e.g. localhost:30650") from exc
    return PachdTarget(url.hostname, port, url.scheme in ("grpcs", "https"), origin)


def _config(env: Mapping[str, str]) -> tuple[dict[str, Any], str] | None:
    candidates = ([env["PACH_CONFIG"]] if env.get("PACH_CONFIG") else []) + list(CONFIG_PATHS)
    for raw in candidates:
        path = Path(raw).expanduser()
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                v2 = data["v2"]
                return dict(v2["contexts"][v2["active_context"]]), str(path)
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"cannot read pachyderm config {path}: {exc}",
                                 hint="fix the file or pass --pachd") from exc
        if raw == env.get("PACH_CONFIG"):
            continue  # PACH_CONFIG names a missing file: fall through like python-pachyderm
    return None


def _token(env: Mapping[str, str], context: Mapping[str, Any] | None) -> str | None:
    # An empty value means "no token" (CI maps unset secret variables to ""), never an empty one.
    if env.get("PACH_PYTHON_AUTH_TOKEN", "").strip():
        return env["PACH_PYTHON_AUTH_TOKEN"].strip()
    token_file = env.get("PACHSYNC_AUTH_TOKEN_FILE")
    if token_file:
        try:
            return Path(token_file).read_text().strip() or None
        except OSError as exc:
            raise UsageError(f"cannot read PACHSYNC_AUTH_TOKEN_FILE {token_file}: {exc}") from exc
    return str(context["session_token"]) if context and context.get("session_token") else None


def _certs(env: Mapping[str, str], context: Mapping[str, Any] | None) -> bytes | None:
    """The CA bundle that grpcs:// trusts: PACHSYNC_CA_FILE, else the config's `server_cas`
    (base64 PEM, as pachctl writes it), else None (python-pachyderm then uses certifi's CAs)."""
    ca_file = env.get("PACHSYNC_CA_FILE")
    if ca_file:
        try:
            data = Path(ca_file).expanduser().read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read PACHSYNC_CA_FILE {ca_file}: {exc.strerror or exc}",
                             hint="point PACHSYNC_CA_FILE at a PEM CA bundle, or unset it") from exc
        if not data.lstrip().startswith(b"-----BEGIN"):
            raise UsageError(f"PACHSYNC_CA_FILE {ca_file} is not a PEM file",
                             hint="give the CA certificate in PEM form "
                                  "(-----BEGIN CERTIFICATE-----)")
        return data.lstrip()
    if context and context.get("server_cas"):
        try:
            return base64.b64decode(str(context["server_cas"]), validate=True)
        except ValueError as exc:
            raise UsageError("pachyderm config: server_cas is not base64-encoded PEM",
                             hint="fix the active context in the config, or set "
                                  "PACHSYNC_CA_FILE") from exc
    return None


def resolve(flag: str | None = None, env: Mapping[str, str] | None = None) -> PachdTarget:
    """Apply the resolution order; never connects."""
    env = os.environ if env is None else env
    found = _config(env) if not flag and not env.get("PACHD_ADDRESS") else None
    context = found[0] if found else None
    if flag:
        target = parse_address(flag, "--pachd")
    elif env.get("PACHD_ADDRESS"):
        target = parse_address(env["PACHD_ADDRESS"], "PACHD_ADDRESS")
    elif context is not None and found is not None:
        addr = context.get("pachd_address") or \
            f"localhost:{(context.get('port_forwarders') or {}).get('pachd', DEFAULT_PORT)}"
        target = parse_address(str(addr), f"config {found[1]}")
    elif env.get("PACHD_PEER_SERVICE_HOST") and env.get("PACHD_PEER_SERVICE_PORT"):
        target = parse_address(f"{env['PACHD_PEER_SERVICE_HOST']}:{env['PACHD_PEER_SERVICE_PORT']}",
                               "in-cluster PACHD_PEER_SERVICE_HOST/PORT")
    elif env.get("PACHD_SERVICE_HOST") and env.get("PACHD_SERVICE_PORT"):
        target = parse_address(f"{env['PACHD_SERVICE_HOST']}:{env['PACHD_SERVICE_PORT']}",
                               "in-cluster PACHD_SERVICE_HOST/PORT")
    else:
        target = PachdTarget("localhost", DEFAULT_PORT, False, "default")
    # CAs only for grpcs://: python-pachyderm turns TLS on whenever it is given root certs,
    # which would make a plaintext address silently speak TLS.
    certs = _certs(env, context) if target.tls else None
    return PachdTarget(target.host, target.port, target.tls, target.origin,
                       _token(env, context), certs)
