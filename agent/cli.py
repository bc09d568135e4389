"""The `pachsync` command line: parses arguments, dispatches to one command module, maps errors.

Each command lives in `agent/commands/<name>.py` and exposes `register(subparsers)`, which adds
its parser and sets `func(args) -> int`. Commands stay thin: the work lives in the layers below
(`runner`, `sync`, `plan`, `specs`, `source`, `cluster`). Heavy imports happen inside `func`, so
`pachsync --help` stays fast. Exit codes are decided here and in `agent.errors`, nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agent.errors import EXIT_ERROR, PachsyncError, exit_code_for

# Order is the order `pachsync --help` lists them.
COMMANDS = (
    "validate",
    "plan",
    "apply",
    "status",
    "load",
    "agent",
    "demo",
    "bump_image",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachsync",
        description="GitOps for Pachyderm pipelines: validate specs, plan and apply them, "
        "and keep a cluster equal to git.",
    )
    parser.add_argument("--version", action="version", version="pachsync 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"agent.commands.{name}":
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except PachsyncError as exc:
        print(exc.format(), file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
