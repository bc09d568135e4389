"""`localpachd serve`: run the server in the foreground (contract C2).

Called by the `localpachd` console script and `python -m localpachd`; the agent starts it as a
subprocess and waits for the line containing `listening on HOST:PORT` (printed and flushed once
the port is bound). SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="localpachd",
                                description="A single-machine server speaking Pachyderm's "
                                            "gRPC API (python-pachyderm works unmodified).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server until SIGINT/SIGTERM")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else should use "
                        "--auth-token)")
    s.add_argument("--port", type=int, default=30650, help="port (0 = any free port)")
    s.add_argument("--data-dir", type=Path, default=Path(".localpachd"),
                   help="where metadata and file contents are kept (default .localpachd)")
    s.add_argument("--auth-token", default=None,
                   help="require metadata `authn-token: TOKEN` on every call")
    s.add_argument("--tls-cert", type=Path, metavar="FILE", default=None,
                   help="PEM certificate (chain) to serve TLS with; needs --tls-key. Clients "
                        "then connect with grpcs://HOST:PORT and trust this certificate's CA "
                        "(pachsync: PACHSYNC_CA_FILE)")
    s.add_argument("--tls-key", type=Path, metavar="FILE", default=None,
                   help="PEM private key of --tls-cert")
    s.add_argument("--runtime", default="auto", help="worker runtime name (default auto)")
    s.add_argument("--max-parallelism", type=int, default=None,
                   help="cap on concurrent datum workers (default: number of CPU cores)")
    s.add_argument("--no-fsync", action="store_true",
                   help="skip fsync (faster; a power loss may lose recent commits)")
    s.add_argument("--log-level", default="WARNING", help="Python logging level")
    return p


def serve(args: argparse.Namespace) -> int:
    from localpachd.server import start

    if not 0 <= args.port <= 65535:  # grpc would silently pick another port
        print(f"localpachd: --port {args.port} is not a TCP port: use 0..65535 "
              "(0 = any free port)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = start(args.data_dir, host=args.host, port=args.port,
                       auth_token=args.auth_token, runtime=args.runtime,
                       max_parallelism=args.max_parallelism, fsync=not args.no_fsync,
                       tls_cert=args.tls_cert, tls_key=args.tls_key)
    except OSError as exc:
        if exc.filename is not None and exc.strerror:  # the data dir (or a TLS file) itself
            print(f"localpachd: cannot use {exc.filename}: {exc.strerror} "
                  "(check --data-dir / --tls-cert / --tls-key)", file=sys.stderr)
        else:
            print(f"localpachd: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.auth_token:
        print(f"localpachd: warning: listening on {args.host} without --auth-token: anyone who "
              "can reach this port can read and change all data", file=sys.stderr, flush=True)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    scheme = "TLS" if server.tls else "plaintext"
    print(f"localpachd listening on {server.address} ({scheme}, data dir {args.data_dir})",
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
