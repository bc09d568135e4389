"""PURE pipeline-spec rules: validation, server-side defaults and normalisation.

Called by `localpachd.pps` on every CreatePipeline before anything is stored, so that
InspectPipeline returns exactly what real Pachyderm 2.7 would: image `ubuntu:20.04`,
output_branch `master`, datum_tries 3, reprocess_spec `until_success`, pfs inputs with name,
branch, repo_type and project filled and their glob cleaned, and composite children sorted by name.
No I/O: checks that need the store (input repos exist) live in `localpachd.pps`.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.json_format import MessageToDict
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.cron import CronSpecError
from localpachd.cron import parse as parse_cron
from localpachd.datums import COMPOSITE_KINDS, INPUT_KINDS, LEAF_KINDS, clean_glob
from localpachd.safepath import is_single_name

DEFAULT_IMAGE = "ubuntu:20.04"
DEFAULT_DATUM_TRIES = 3
REPROCESS_UNTIL_SUCCESS = "until_success"
REPROCESS_EVERY_JOB = "every_job"
MAX_NAME_LEN = 51
_NAME_RX = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
# Pachyderm 2.7 (pps server validateName): /pfs/out collects the output, /pfs/.env is reserved.
RESERVED_INPUT_NAMES = ("out", ".env")

# Details fields copied from the CreatePipelineRequest (same names in both messages).
DETAIL_FIELDS = (
    "transform", "tf_job", "parallelism_spec", "egress", "output_branch", "resource_requests",
    "resource_limits", "sidecar_resource_limits", "input", "description", "salt", "service",
    "spout", "datum_set_spec", "datum_timeout", "job_timeout", "datum_tries", "scheduling_spec",
    "pod_spec", "pod_patch", "s3_out", "metadata", "reprocess_spec", "autoscaling",
    "tolerations", "sidecar_resource_requests", "determined",
)  # fmt: skip


class SpecInvalid(ValueError):
    """The request is not a valid pipeline spec (gRPC INVALID_ARGUMENT)."""


def project_of(req: pps_pb2.CreatePipelineRequest) -> str:
    return req.pipeline.project.name or "default"


def input_name(inp: pps_pb2.Input) -> str:
    """Pachyderm's InputName: the pfs/cron name, or the first child's name for composites."""
    if inp.HasField("pfs"):
        return str(inp.pfs.name or inp.pfs.repo)
    if inp.HasField("cron"):
        return str(inp.cron.name)
    for kind in COMPOSITE_KINDS:
        children = getattr(inp, kind)
        if children:
            return input_name(children[0])
    return ""


def _kinds(inp: pps_pb2.Input) -> list[str]:
    kinds = [k for k in LEAF_KINDS if inp.HasField(k)]
    return kinds + [k for k in COMPOSITE_KINDS if len(getattr(inp, k))]


def validate_name(name: str) -> None:
    if not name:
        raise SpecInvalid("invalid pipeline spec: request.Pipeline.Name cannot be empty")
    if len(name) > MAX_NAME_LEN:
        raise SpecInvalid(
            f"pipeline name {name!r} is {len(name)} characters long, "
            f"but must have at most {MAX_NAME_LEN} characters"
        )
    if not _NAME_RX.fullmatch(name):  # `$` would also match before a final newline
        raise SpecInvalid(
            f"pipeline name {name!r} must start with an alphanumeric character and contain "
            "only alphanumeric characters, '_' and '-'"
        )


def validate_input_name(name: str, where: str = "input") -> None:
    """Pachyderm 2.7's rule for a (defaulted) pfs input name, with its texts, plus what
    localpachd needs to make `/pfs/<name>` one directory and `$<name>` one environment variable
    (Pachyderm 2.7 does not check these, and joins the name to its /pfs path as given)."""
    if not name:
        raise SpecInvalid("input must specify a name")
    if name in RESERVED_INPUT_NAMES:
        raise SpecInvalid(f"input cannot be named {name}")
    if not is_single_name(name):
        raise SpecInvalid(
            f"{where}.pfs: input name {name!r} is invalid: it must be a single directory name "
            "under /pfs (not empty, '.' or '..', without '/' or NUL): set `name` to one"
        )
    if "=" in name:
        raise SpecInvalid(
            f"{where}.pfs: input name {name!r} is invalid: '=' cannot be part of the name of "
            "the environment variable that holds the input's path: set `name` without it"
        )


def _validate_input(inp: pps_pb2.Input, where: str, names: list[str]) -> None:
    kinds = _kinds(inp)
    if len(kinds) != 1:
        raise SpecInvalid(
            f"{where}: exactly one of {', '.join(INPUT_KINDS)} must be set "
            f"(got {kinds or 'none'})"
        )
    kind = kinds[0]
    if kind == "pfs":
        pfs = inp.pfs
        if not pfs.repo:
            raise SpecInvalid(f"{where}.pfs: input must specify a repo")
        if not pfs.glob:
            raise SpecInvalid(f"{where}.pfs: input must specify a glob")
        if pfs.commit:
            raise SpecInvalid(f"{where}.pfs: input cannot specify a commit")
        if pfs.outer_join and not pfs.join_on:
            raise SpecInvalid(f"{where}.pfs: outer joins are only supported on join inputs")
        validate_input_name(pfs.name or pfs.repo, where)
        names.append(pfs.name or pfs.repo)
        return
    if kind == "cron":
        _validate_cron(inp.cron, where)
        names.append(inp.cron.name)
        return
    children = getattr(inp, kind)
    for i, child in enumerate(children):
        sub: list[str] = []
        _validate_input(child, f"{where}.{kind}[{i}]", sub)
        if kind == "union":
            continue  # union children may reuse a name: only one of them is in any datum
        for n in sub:
            if n in names:
                raise SpecInvalid(f"{where}: name {n!r} was used more than once")
            names.append(n)
        if kind == "join" and child.HasField("pfs") and not child.pfs.join_on:
            raise SpecInvalid(f"{where}.join[{i}]: join inputs must set join_on")
        if kind == "group" and child.HasField("pfs") and not child.pfs.group_by:
            raise SpecInvalid(f"{where}.group[{i}]: group inputs must set group_by")
    if kind == "union":
        names.extend(sorted({n for c in children for n in _names(c)} - set(names)))


def _validate_cron(cron: pps_pb2.CronInput, where: str) -> None:
    """Pachyderm 2.7's checks of a cron input: a name (as a pfs input's), a parsable spec."""
    validate_input_name(cron.name, f"{where}.cron")
    try:
        parse_cron(cron.spec)
    except CronSpecError as exc:
        raise SpecInvalid(f"error parsing cron-spec: {exc}") from exc


def _names(inp: pps_pb2.Input) -> list[str]:
    if inp.HasField("pfs"):
        return [inp.pfs.name or inp.pfs.repo]
    if inp.HasField("cron"):
        return [inp.cron.name]
    return [n for k in COMPOSITE_KINDS for c in getattr(inp, k) for n in _names(c)]


def validate(req: pps_pb2.CreatePipelineRequest) -> None:
    """Raise SpecInvalid with Pachyderm's wording for every rule localpachd enforces."""
    validate_name(req.pipeline.name)
    if not req.HasField("transform"):
        raise SpecInvalid("invalid pipeline spec: pipeline must specify a transform")
    if req.reprocess_spec not in ("", REPROCESS_UNTIL_SUCCESS, REPROCESS_EVERY_JOB):
        raise SpecInvalid(
            "invalid pipeline spec: ReprocessSpec must be one of "
            f"'{REPROCESS_UNTIL_SUCCESS}' or '{REPROCESS_EVERY_JOB}'"
        )
    _validate_long_running(req)
    if req.HasField("input"):
        _validate_input(req.input, "input", [])
    elif not req.HasField("spout"):
        raise SpecInvalid("invalid pipeline spec: pipeline must specify an input")
    _validate_secrets(req.transform)
    if req.datum_tries < 0:
        raise SpecInvalid("invalid pipeline spec: datum_tries must not be negative")


SERVICE_TYPES = ("ClusterIP", "LoadBalancer", "NodePort")


def _validate_long_running(req: pps_pb2.CreatePipelineRequest) -> None:
    """Pachyderm 2.7's rules for spouts and services (validatePipeline), plus the ports a
    service needs on one machine."""
    services = [("service", req.service)] if req.HasField("service") else []
    if req.HasField("spout") and req.spout.HasField("service"):
        services.append(("spout.service", req.spout.service))
    for where, svc in services:
        if svc.type and svc.type not in SERVICE_TYPES:
            raise SpecInvalid(f"invalid pipeline spec: the following service type {svc.type} "
                              "is not allowed")  # fmt: skip
        for port in ("internal_port", "external_port"):
            if not 0 <= getattr(svc, port) <= 65535:
                raise SpecInvalid(f"invalid pipeline spec: {where}.{port} "
                                  f"{getattr(svc, port)} is not a port (0-65535)")  # fmt: skip
        if svc.internal_port == 0:
            raise SpecInvalid(f"invalid pipeline spec: {where}.internal_port must be set: the "
                              "port the pipeline's process listens on")  # fmt: skip
    if req.HasField("spout") and not req.spout.HasField("service") and req.HasField("input"):
        raise SpecInvalid(
            "invalid pipeline spec: spout pipelines (without a service) must not have an input")


def _validate_secrets(transform: pps_pb2.Transform) -> None:
    """transform.secrets: Pachyderm 2.7's rule (env_var needs key), plus what localpachd needs
    to stand a directory in for `mount_path` and to set `env_var` (no effect on values)."""
    mounts: set[str] = set()
    for i, s in enumerate(transform.secrets):
        where = f"transform.secrets[{i}]"
        if not s.name:
            raise SpecInvalid(f"{where}: a secret must have a name")
        if s.env_var and not s.key:
            raise SpecInvalid(f"secret {s.name} has env_var set but is missing key")
        if s.env_var and ("=" in s.env_var or "\0" in s.env_var):
            raise SpecInvalid(f"{where}: env_var {s.env_var!r} is not a valid environment "
                              "variable name (no '=' or NUL): rename it")  # fmt: skip
        if s.mount_path:
            _validate_mount_path(s.mount_path, where)
            if s.mount_path in mounts:
                raise SpecInvalid(f"{where}: mount_path {s.mount_path!r} must be unique")
            mounts.add(s.mount_path)


def _validate_mount_path(path: str, where: str) -> None:
    parts = path.split("/")
    if (not path.startswith("/") or path == "/" or "\0" in path
            or any(p in ("", ".", "..") for p in parts[1:])):  # fmt: skip
        raise SpecInvalid(
            f"{where}: mount_path {path!r} must be a clean absolute path other than '/' "
            "(no empty, '.' or '..' segments, no trailing '/'): write it as /a/b"
        )
    if parts[1] == "pfs":
        raise SpecInvalid(f"{where}: mount_path {path!r} cannot be /pfs or lie under it: "
                          "/pfs holds the datum's inputs and output")  # fmt: skip


def _default_cron(cron: pps_pb2.CronInput, project: str, pipeline: str) -> None:
    """Pachyderm's defaults: repo `<pipeline>_<name>`, the pipeline's project, start = now."""
    cron.repo = cron.repo or f"{pipeline}_{cron.name}"
    cron.project = cron.project or project
    if not cron.HasField("start"):
        cron.start.GetCurrentTime()
        cron.start.nanos = 0


def _default_input(inp: pps_pb2.Input, project: str, pipeline: str = "") -> None:
    if inp.HasField("cron"):
        _default_cron(inp.cron, project, pipeline)
        return
    if inp.HasField("pfs"):
        pfs = inp.pfs
        pfs.name = pfs.name or pfs.repo
        pfs.branch = pfs.branch or "master"
        pfs.repo_type = pfs.repo_type or "user"
        pfs.project = pfs.project or project
        pfs.glob = clean_glob(pfs.glob)
        return
    for kind in COMPOSITE_KINDS:
        children = getattr(inp, kind)
        for child in children:
            _default_input(child, project, pipeline)
        if children:
            ordered = sorted(
                (pps_pb2.Input.FromString(c.SerializeToString()) for c in children),
                key=input_name,
            )
            del children[:]
            children.extend(ordered)


def with_defaults(req: pps_pb2.CreatePipelineRequest) -> pps_pb2.CreatePipelineRequest:
    """A copy of the (validated) request with every server-side default filled in."""
    out = pps_pb2.CreatePipelineRequest()
    out.CopyFrom(req)
    project = project_of(req)
    out.pipeline.project.name = project
    out.transform.image = out.transform.image or DEFAULT_IMAGE
    out.output_branch = out.output_branch or "master"
    out.datum_tries = out.datum_tries or DEFAULT_DATUM_TRIES
    out.reprocess_spec = out.reprocess_spec or REPROCESS_UNTIL_SUCCESS
    _default_input(out.input, project, out.pipeline.name)
    # Request-only switches are not part of the stored spec.
    for f in ("update", "reprocess", "dry_run"):
        out.ClearField(f)
    return out


def details_of(spec: pps_pb2.CreatePipelineRequest) -> pps_pb2.PipelineInfo.Details:
    """PipelineInfo.Details holding the stored (defaulted) spec."""
    details = pps_pb2.PipelineInfo.Details()
    for name in DETAIL_FIELDS:
        fd = spec.DESCRIPTOR.fields_by_name[name]
        value = getattr(spec, name)
        if fd.label == fd.LABEL_REPEATED:
            getattr(details, name).extend(value)
        elif fd.message_type is not None:
            if spec.HasField(name):
                getattr(details, name).CopyFrom(value)
        else:
            setattr(details, name, value)
    return details


def input_dict(inp: pps_pb2.Input) -> dict[str, Any]:
    """The input tree as the snake_case dict `localpachd.datums` works on."""
    out: dict[str, Any] = MessageToDict(inp, preserving_proto_field_name=True)
    return out


def parallelism(spec: pps_pb2.CreatePipelineRequest, cap: int) -> int:
    """Concurrent datum workers: parallelism_spec.constant (default 1) capped at `cap`."""
    wanted = spec.parallelism_spec.constant if spec.HasField("parallelism_spec") else 0
    return max(1, min(int(wanted or 1), max(1, cap)))
