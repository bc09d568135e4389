"""`localpachd serve`: run the server in the foreground (contract C2).

Called by the `localpachd` console script and `python -m localpachd`; the agent starts it as a
subprocess and waits for the line containing `listening on HOST:PORT` (printed and flushed once
the port is bound). SIGINT/SIGTERM stop it cleanly.

The auth token comes from `--auth-token-file FILE`, else `--auth-token TOKEN` (visible to every
local user in `ps` and /proc/PID/cmdline), else the environment variable LOCALPACHD_AUTH_TOKEN.
A token that is given but empty or blank is refused (exit 2): it would otherwise mean "no auth".
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_TOKEN = "LOCALPACHD_AUTH_TOKEN"


class TokenProblem(Exception):
    """The auth token given is unusable: the message says which source and what to do."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="localpachd",
                                description="A single-machine server speaking Pachyderm's "
                                            "gRPC API (python-pachyderm works unmodified).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server until SIGINT/SIGTERM")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else should require "
                        "an auth token)")
    s.add_argument("--port", type=int, default=30650, help="port (0 = any free port)")
    s.add_argument("--data-dir", type=Path, default=Path(".localpachd"),
                   help="where metadata and file contents are kept (default .localpachd)")
    auth = s.add_mutually_exclusive_group()
    auth.add_argument("--auth-token-file", type=Path, metavar="FILE", default=None,
                      help="require metadata `authn-token: TOKEN` on every call, TOKEN being "
                           "this file's content (surrounding whitespace ignored)")
    auth.add_argument("--auth-token", metavar="TOKEN", default=None,
                      help="the same with TOKEN given here; the command line is visible to "
                           "other local users (ps, /proc/PID/cmdline), so prefer "
                           f"--auth-token-file or the environment variable {ENV_TOKEN}, which "
                           "is used when neither option is given")
    s.add_argument("--tls-cert", type=Path, metavar="FILE", default=None,
                   help="PEM certificate (chain) to serve TLS with; needs --tls-key. Clients "
                        "then connect with grpcs://HOST:PORT and trust this certificate's CA "
                        "(pachsync: PACHSYNC_CA_FILE)")
    s.add_argument("--tls-key", type=Path, metavar="FILE", default=None,
                   help="PEM private key of --tls-cert")
    s.add_argument("--runtime", default="auto", help="worker runtime name (default auto)")
    s.add_argument("--max-parallelism", type=int, default=None,
                   help="cap on concurrent datum workers (default: number of CPU cores)")
    s.add_argument("--workers", type=int, metavar="N", default=None,
                   help="gRPC handler threads, i.e. calls served at once (default 64); a "
                        "blocking call (a wait, SubscribeCommit, GetLogs --follow) holds one "
                        "until it returns")
    s.add_argument("--wait-slots", type=int, metavar="M", default=None,
                   help="how many handler threads blocking calls may hold together (below "
                        "--workers, so ordinary calls always find one; default: workers minus "
                        "max(4, workers/4)); one more blocking call is refused with "
                        "RESOURCE_EXHAUSTED instead of waiting")
    s.add_argument("--wait-slots-per-peer", type=int, metavar="K", default=None,
                   help="the most wait slots one client connection may hold (default: half of "
                        "--wait-slots)")
    s.add_argument("--pfs-mode", choices=("auto", "namespace", "rewrite"), default=None,
                   help="how datums see /pfs: auto (default; env LOCALPACHD_PFS_MODE) gives each "
                        "datum a private mount namespace with a real /pfs where the kernel allows "
                        "it, else rewrites /pfs in cmd, stdin and env; rewrite skips namespaces "
                        "(~20-30 ms less per non-Python datum)")
    s.add_argument("--no-fsync", action="store_true",
                   help="skip fsync (faster; a power loss may lose recent commits)")
    s.add_argument("--url-allow-dir", type=Path, metavar="DIR", action="append", default=[],
                   help="let put-file-from-URL read file:// URLs under DIR (repeatable; off by "
                        "default: the server would read its own disk for any client). Links "
                        "below DIR are never followed")
    s.add_argument("--url-timeout", type=float, metavar="SECONDS", default=None,
                   help="put file from an http(s) URL: seconds to connect and for each read "
                        "(default 30)")
    s.add_argument("--url-deadline", type=float, metavar="SECONDS", default=None,
                   help="seconds one URL source may take as a whole (default 3600)")
    s.add_argument("--url-max-bytes", type=int, metavar="N", default=None,
                   help="bytes one URL source may bring (default 8 GiB)")
    s.add_argument("--log-level", default="WARNING", help="Python logging level")
    return p


def url_options(args: argparse.Namespace) -> Any:
    """The put-file-from-URL options given (`localpachd.pfs.urls.UrlOptions`); ValueError
    naming the flag when a directory is missing or a bound is not positive."""
    from dataclasses import replace

    from localpachd.pfs.urls import UrlOptions

    for d in args.url_allow_dir:
        if not d.is_dir():
            raise ValueError(f"--url-allow-dir {d}: not a directory")
    bounds = {"timeout": args.url_timeout, "deadline": args.url_deadline,
              "max_bytes": args.url_max_bytes}
    for name, value in bounds.items():
        if value is not None and value <= 0:
            raise ValueError(f"--url-{name.replace('_', '-')} {value}: must be positive")
    given = {k: v for k, v in bounds.items() if v is not None}
    return replace(UrlOptions(), allow_dirs=tuple(d.absolute() for d in args.url_allow_dir),
                   **given)


def _checked(token: str, origin: str) -> str:
    if not token.strip():
        raise TokenProblem(f"the auth token from {origin} is empty: put the token there, or "
                           "give none to serve without auth (loopback only)")
    if not all(" " < ch <= "~" for ch in token):
        raise TokenProblem(f"the auth token from {origin} must be printable ASCII without "
                           "spaces (it travels as gRPC metadata)")
    return token


def auth_token(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The token to require, from the file, the flag or the environment (in that order), or
    None when none is given. TokenProblem when the one given is unusable."""
    if args.auth_token_file is not None:
        origin = f"--auth-token-file {args.auth_token_file}"
        try:
            text = args.auth_token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise TokenProblem(f"cannot read {origin}: {reason}") from exc
        return _checked(text.strip(), origin)
    if args.auth_token is not None:
        return _checked(args.auth_token, "--auth-token")
    if ENV_TOKEN in env:
        return _checked(env[ENV_TOKEN], f"the environment variable {ENV_TOKEN}")
    return None


def threads(args: argparse.Namespace) -> dict[str, int]:
    """The thread options given (`workers`, `wait_slots`, `wait_slots_per_peer`), checked as
    the server will; ValueError naming the flag otherwise."""
    from localpachd import waits
    from localpachd.context import ServerConfig

    given = {name: value for name in ("workers", "wait_slots", "wait_slots_per_peer")
             if (value := getattr(args, name)) is not None}
    try:
        waits.sizes(given.get("workers", ServerConfig.workers), given.get("wait_slots"),
                    given.get("wait_slots_per_peer"))
    except ValueError as exc:
        flags = ", ".join("--" + name.replace("_", "-") for name in given) or "--workers"
        raise ValueError(f"{flags}: {exc}") from exc
    return given


def serve(args: argparse.Namespace) -> int:
    from localpachd import runtime_pfsmount as pfsmount
    from localpachd.server import start

    if not 0 <= args.port <= 65535:  # grpc would silently pick another port
        print(f"localpachd: --port {args.port} is not a TCP port: use 0..65535 "
              "(0 = any free port)", file=sys.stderr)
        return 2
    if args.pfs_mode:  # read once by runtime_pfsmount.mode(), process-wide like the probe
        os.environ[pfsmount.MODE_ENV] = args.pfs_mode
    try:
        options: dict[str, Any] = {**threads(args), "urls": url_options(args)}
    except ValueError as exc:
        print(f"localpachd: {exc}", file=sys.stderr)
        return 2
    try:
        token = auth_token(args, os.environ)
    except TokenProblem as exc:
        print(f"localpachd: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = start(args.data_dir, host=args.host, port=args.port,
                       auth_token=token, runtime=args.runtime,
                       max_parallelism=args.max_parallelism, fsync=not args.no_fsync,
                       tls_cert=args.tls_cert, tls_key=args.tls_key, **options)
    except OSError as exc:
        if exc.filename is not None and exc.strerror:  # the data dir (or a TLS file) itself
            print(f"localpachd: cannot use {exc.filename}: {exc.strerror} "
                  "(check --data-dir / --tls-cert / --tls-key)", file=sys.stderr)
        else:
            print(f"localpachd: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        print(f"localpachd: warning: listening on {args.host} without an auth token: anyone who "
              "can reach this port can read and change all data", file=sys.stderr, flush=True)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    scheme = "TLS" if server.tls else "plaintext"
    print(f"localpachd listening on {server.address} ({scheme}, data dir {args.data_dir})",
          flush=True)
    # after `listening on`, which callers read as the first line
    print(f"localpachd: /pfs mode {pfsmount.mode()}: {pfsmount.describe(pfsmount.mode())}",
          flush=True)
    while not done.wait(1.0):
        pass
    server.stop(grace=2.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
