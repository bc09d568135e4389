"""Limits Pachyderm enforces at apply time, checked at validate time so a spec that validates
also applies: protobuf durations and timestamps, valid JSON in pod_patch, the S3-input rules of
Pachyderm's validateInput, the gRPC message size of one CreatePipelineRequest and of the one
transaction the agent applies them in, and the Community Edition's parallelism (a warning).

Used by `agent.specs.check_specs` after the schema check (integer and float ranges of each
protobuf field live in the schema itself, `schemas/pipeline.schema.json`). The sizes are upper
bounds computed from the loaded documents, without protobuf: `agent.specs` must not import
python_pachyderm (only `agent.cluster` does). Pure functions.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from agent.errors import SpecError
from agent.specs.semantic import PipelineDoc
from agent.specs.yamlread import Path_
from agent.util.inputs import COMBINATORS

# Pachyderm's grpcutil.MaxMsgSize (src/internal/grpcutil/stream.go): 20 MiB for any message,
# also python-pachyderm's receive limit. FinishTransaction answers with every request it
# holds, so the requests of one transaction must fit one message together.
MAX_MESSAGE = 20 * 2**20
# What the agent adds to each request (its four pachsync.io/ annotations, update/reprocess
# flags) and what a TransactionInfo wraps around it, generously.
REQUEST_RESERVE = 4096
MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration: +-10,000 years
CE_PARALLELISM = 8  # Pachyderm's enterprise limits.Parallelism without an activation key
_DURATION = re.compile(r"([0-9]+)(?:\.[0-9]{0,9})?s")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)


def limit_errors(doc: PipelineDoc) -> list[SpecError]:
    """What Pachyderm or protobuf refuse at apply time though the schema allows its form."""
    spec = doc.doc.data if isinstance(doc.doc.data, dict) else {}
    errors = _duration_errors(doc, spec) + _input_errors(doc, spec.get("input"), ("input",))
    patch = spec.get("pod_patch")
    if isinstance(patch, str) and not _is_json(patch):
        errors.append(doc.err(("pod_patch",), "pod_patch is not valid JSON (Pachyderm refuses "
                              "a malformed PodPatch)", "write a JSON patch, e.g. '[{\"op\": "
                              "\"add\", \"path\": \"/x\", \"value\": 1}]'"))
    return errors


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _input_errors(doc: PipelineDoc, node: Any, path: Path_, within: str = "") -> list[SpecError]:
    """Pachyderm's validateInput rules for S3 inputs, and cron start times protobuf can hold."""
    if not isinstance(node, dict):
        return []
    errors = []
    pfs, cron = node.get("pfs"), node.get("cron")
    if isinstance(pfs, dict) and pfs.get("s3") is True:
        errors += _s3_errors(doc, pfs, path + ("pfs",), within)
    if isinstance(cron, dict) and isinstance(cron.get("start"), str):
        if not _timestamp_ok(cron["start"]):
            errors.append(doc.err(path + ("cron", "start"), f"{cron['start'][:40]!r} is not a "
                                  "time protobuf can hold", 'e.g. "2024-01-31T00:00:00Z"'))
    for combo in COMBINATORS:
        children = node.get(combo)
        for index, child in enumerate(children if isinstance(children, list) else []):
            inner = within or (combo if combo != "cross" else "")
            errors += _input_errors(doc, child, path + (combo, index), inner)
    return errors


def _s3_errors(doc: PipelineDoc, pfs: dict[str, Any], path: Path_, within: str) -> list[SpecError]:
    rules = [
        (pfs.get("glob") not in (None, "/"), ("glob",),
         "an input with s3: true must have glob \"/\": the S3 gateway exposes whole commits"),
        (pfs.get("lazy") is True, ("lazy",), "an input cannot set both s3 and lazy"),
        (pfs.get("empty_files") is True, ("empty_files",),
         "an input cannot set both s3 and empty_files"),
        (bool(within), ("s3",), f"Pachyderm does not support S3 inputs inside a {within}"),
    ]
    return [doc.err(path + key, message, "see Pachyderm's S3 input rules; drop s3: true or "
                    "restructure the input") for broken, key, message in rules if broken]


def _timestamp_ok(text: str) -> bool:
    """Only texts of the schema's form are judged (others are already schema errors)."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return True
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    sign, off_h, off_m = match.group(7), match.group(8), match.group(9)
    try:
        if sign and (int(off_h) > 23 or int(off_m) > 59):
            return False
        offset = (int(off_h) * 60 + int(off_m)) * (-1 if sign == "-" else 1) if sign else 0
        zone = timezone(timedelta(minutes=offset))
        datetime(year, month, day, hour, minute, second, tzinfo=zone).astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    return True


def _duration_errors(doc: PipelineDoc, spec: dict[str, Any]) -> list[SpecError]:
    errors = []
    for key in ("datum_timeout", "job_timeout"):
        value = spec.get(key)
        if not isinstance(value, str):
            continue
        match = _DURATION.fullmatch(value)
        seconds = match.group(1).lstrip("0") if match is not None else ""
        # Compare lengths first: int() refuses strings of more than 4300 digits.
        if len(seconds) > 12 or (seconds and int(seconds) > MAX_DURATION_SECONDS):
            errors.append(doc.err(
                (key,),
                f"{value[:40]!r} is longer than a protobuf duration can hold "
                f"({MAX_DURATION_SECONDS}s, 10,000 years)",
                'write a realistic timeout in seconds, e.g. "3600s"',
            ))
    return errors


def limit_warnings(doc: PipelineDoc) -> list[SpecError]:
    """Parallelism a Pachyderm without an enterprise key refuses (allowed with one)."""
    spec = doc.doc.data if isinstance(doc.doc.data, dict) else {}
    parallelism = spec.get("parallelism_spec")
    constant = parallelism.get("constant") if isinstance(parallelism, dict) else None
    if isinstance(constant, int) and constant > CE_PARALLELISM:
        return [doc.err(
            ("parallelism_spec", "constant"),
            f"Pachyderm Community Edition refuses a parallelism above {CE_PARALLELISM} "
            "without an enterprise activation key",
            "ignore this on an enterprise cluster; otherwise lower it",
        )]
    return []


def wire_size(value: Any) -> int:
    """An upper bound of `value`'s protobuf encoding: every field, list item and map entry is
    counted with a 2-byte tag and a 5-byte length prefix, scalars at their widest."""
    if isinstance(value, dict):
        return sum(7 + wire_size(str(k)) + wire_size(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(7 + wire_size(item) for item in value)
    if isinstance(value, str):
        return 7 + len(value.encode("utf-8", "surrogatepass"))
    return 12  # bool, int64, double, enum: a tag and at most a 10-byte varint


def request_size_errors(
    docs: list[PipelineDoc], limit: int = MAX_MESSAGE, reserve: int = REQUEST_RESERVE
) -> list[SpecError]:
    """A spec whose CreatePipelineRequest would exceed `limit`, or, when every one fits, a
    set whose requests together would not fit the one transaction the agent applies."""
    sizes = [(wire_size(doc.doc.data) + reserve, doc) for doc in docs]
    errors = [
        doc.err(
            (),
            f"the spec makes one request of about {_mib(size)}, over Pachyderm's "
            f"{_mib(limit)} gRPC message limit",
            "shorten it (description, cmd, env): specs are a few KB",
        )
        for size, doc in sizes
        if size > limit
    ]
    total = sum(size for size, _ in sizes)
    if errors or len(sizes) < 2 or total <= limit:
        return errors
    size, largest = max(sizes, key=lambda pair: pair[0])
    return [largest.err(
        (),
        f"the {len(sizes)} pipeline specs make one transaction of about {_mib(total)}, over "
        f"Pachyderm's {_mib(limit)} gRPC message limit (this one, {largest.name or largest.stem},"
        f" is the largest: {_mib(size)})",
        "pachsync applies every pipeline in one transaction: shorten the largest specs",
    )]


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"
