"""`pachsync load REPO SRC`: put local data (a file or a directory) into an input repo.

Thin: options -> agent.cluster.load.load_path (one commit, one atomic upload). `--split-lines`
writes one file per line named as Pachyderm 1.x's `put file --split line` did
(`c_parameters.txt` -> `/c_parameters.txt/0000000000000000` ... `/000000000000000a`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent.commands._syncargs import add_pachd_arg
from agent.errors import EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "load", help="put a local file or directory into an input repo (one commit)",
        description="Upload SRC (a file or a directory) into REPO's branch as one commit. The "
        "destination defaults to SRC's base name; a directory keeps its layout under it "
        "(--dest / puts its content at the repo root).")
    p.add_argument("repo", metavar="REPO", help="input repo to write to (must exist)")
    p.add_argument("src", metavar="SRC", type=Path, help="local file or directory")
    p.add_argument("--dest", metavar="PATH", help="destination path in the repo")
    p.add_argument("--split-lines", action="store_true",
                   help="one file per line, named with 16 hex digits like Pachyderm 1.x")
    p.add_argument("--branch", default="master", help="branch to commit to (default: master)")
    p.add_argument("--project", default="default", help="Pachyderm project (default: default)")
    add_pachd_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cluster.address import resolve
    from agent.cluster.client import connect
    from agent.cluster.load import load_path

    conn = connect(resolve(args.pachd))
    try:
        report = load_path(conn, args.repo, args.src, args.dest, args.split_lines,
                           branch=args.branch, project=args.project)
    finally:
        conn.close()
    print(f"loaded {len(report.files)} file(s), {report.bytes} bytes into "
          f"{report.repo}@{args.branch} (commit {report.commit})")
    return EXIT_OK
