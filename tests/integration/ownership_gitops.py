"""Helpers for the ownership, adoption and conflict tests: `pachsync agent --once` as a real
process, the CLI in process, and what people do to pipelines outside pachsync (`pachctl create
pipeline -f` / `pachctl update pipeline -f` with a spec file that carries no annotations).

Imported by tests/integration/test_ownership.py, test_adoption.py and test_conflicts_partial.py,
next to agentcore_gitops (the `copy` -> `count` GitOps repo).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cli import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def agent_once(source: str, address: str, cache: Path, *flags: str) -> Ran:
    """`python -m agent agent --once` against `address`, following `source` (branch main)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACHSYNC_", "PACHD_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "agent", "--once", "--source", source, "--pachd",
         address, "--cache-dir", str(cache), "--listen", "127.0.0.1:0", *flags],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def cli(*argv: str) -> Ran:
    """The `pachsync` CLI in this process (its exit code and what it printed)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Ran(code, out.getvalue(), err.getvalue())


def spec_of(client: Any, name: str) -> dict[str, Any]:
    """The live spec of `name` as a `pachctl ... -f` file would hold it (no salt)."""
    info = next(iter(client.inspect_pipeline(name, details=True)))
    spec = json_format.MessageToDict(info.details, preserving_proto_field_name=True)
    keep = {f.name for f in pps_pb2.CreatePipelineRequest.DESCRIPTOR.fields}
    return {k: v for k, v in spec.items() if k in keep and k != "salt"}


def by_hand(client: Any, name: str, spec: dict[str, Any], update: bool,
            annotations: dict[str, str] | None = None) -> None:
    """`pachctl create|update pipeline -f spec.json`: the spec as given, with only the
    `annotations` given (none by default, as a hand-written spec file has)."""
    doc = {k: v for k, v in spec.items() if k != "metadata"}
    if annotations:
        doc["metadata"] = {"annotations": annotations}
    req = pps_pb2.CreatePipelineRequest(pipeline=pps_pb2.Pipeline(name=name), update=update)
    json_format.ParseDict(doc, req)
    client.create_pipeline_from_request(req)


def live(client: Any, name: str) -> tuple[str, dict[str, str], int]:
    """(description, annotations, version) of a live pipeline."""
    info = next(iter(client.inspect_pipeline(name, details=True)))
    return (info.details.description, dict(info.details.metadata.annotations),
            int(info.version))


def names(client: Any) -> set[str]:
    return {p.pipeline.name for p in client.list_pipeline()}
