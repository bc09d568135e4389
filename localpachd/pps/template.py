"""RenderTemplate's pure part: the request's bounds, the error texts, and the rendered JSON as
pipeline specs.

Used by `localpachd.pps.servicer.PPSServicer.RenderTemplate`, which evaluates the template in
between with `localpachd.runtime_template.evaluate`. As Pachyderm 2.7
(src/server/pps/server/api_server.go `RenderTemplate`): the response holds the rendered JSON text
and, when it is an object, that one spec (protojson: proto or JSON field names, an unknown field
refused), when it is a list, one spec per item, and anything else is refused ("not a json object
or list: …"); 2.7 reports a Jsonnet error as "template err: " + Jsonnet's text. 2.7 decodes the
items of a list with Go's encoding/json, which ignores unknown keys (so here too) but also
mis-reads camelCase names and string durations (here they are read as in an object).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import errors
from localpachd.limits import MAX_MESSAGE
from localpachd.runtime_template import MIB, Kind

MAX_TEMPLATE = 1 * MIB  # bytes of Jsonnet source (2.7: only the 20 MiB message limit)
MAX_ARGS = 1 * MIB  # bytes of all argument names and values together
MAX_TEXT = 4096  # characters of an error text (Jsonnet's traces, a quoted value) sent back
PREFIX = "template err: "  # 2.7's errors.Wrapf(err, "template err")

# Why runtime_template's evaluation gave no JSON -> the status code: the template's own error
# is an invalid argument; a bound of localpachd's is a resource exhausted.
_CODE_OF_KIND: dict[Kind, type[errors.PachError]] = {
    Kind.JSONNET: errors.InvalidArgument,
    Kind.CPU: errors.ResourceExhausted,
    Kind.MEMORY: errors.ResourceExhausted,
    Kind.TIME: errors.ResourceExhausted,
    Kind.OUTPUT: errors.ResourceExhausted,
    Kind.BUSY: errors.ResourceExhausted,
    Kind.STOPPED: errors.Aborted,
    Kind.CRASHED: errors.Internal,
}


def cut(text: str, limit: int = MAX_TEXT) -> str:
    """`text` without trailing blanks, at most `limit` characters (then a marker says so)."""
    text = text.rstrip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [… {len(text) - limit} more characters cut by localpachd]"


def check_request(template: str, args: Mapping[str, str]) -> None:
    """Refuse, before anything runs, a template or arguments past localpachd's bounds or that
    Jsonnet's C API cannot take (a NUL character ends its strings)."""
    size = len(template.encode())
    if size > MAX_TEMPLATE:
        raise errors.ResourceExhausted(
            f"{PREFIX}the template is {size} bytes, over localpachd's limit of {MAX_TEMPLATE} "
            "bytes for a Jsonnet template: split it or move data into arguments")
    arg_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in args.items())
    if arg_bytes > MAX_ARGS:
        raise errors.ResourceExhausted(
            f"{PREFIX}the arguments are {arg_bytes} bytes, over localpachd's limit of {MAX_ARGS} "
            "bytes for a template's arguments")
    if "\0" in template:
        raise errors.InvalidArgument(
            f"{PREFIX}the template holds a NUL character at offset {template.index(chr(0))}: "
            "Jsonnet source cannot")
    for key, value in args.items():
        if "\0" in key or "\0" in value:
            raise errors.InvalidArgument(
                f"{PREFIX}argument {cut(repr(key), 200)} holds a NUL character: Jsonnet "
                "arguments cannot")


def failed(kind: Kind, text: str) -> errors.PachError:
    """The error for an evaluation that failed with `kind` and `text`."""
    return _CODE_OF_KIND.get(kind, errors.Internal)(PREFIX + cut(text))


def response(rendered: str) -> pps_pb2.RenderTemplateResponse:
    """2.7's answer for the rendered JSON: the text and the specs it holds."""
    out = pps_pb2.RenderTemplateResponse(json=rendered)
    out.specs.extend(specs_of(rendered))
    size = out.ByteSize()
    if size > MAX_MESSAGE:
        raise errors.ResourceExhausted(
            f"the rendered template's response is {size} bytes, over the {MAX_MESSAGE}-byte "
            "message limit: render fewer pipelines at once")
    return out


def specs_of(rendered: str) -> list[pps_pb2.CreatePipelineRequest]:
    """The CreatePipelineRequests of the rendered JSON: one object or a list of them."""
    first = rendered.lstrip()[:1]  # 2.7 looks at the first byte; Jsonnet starts with the value
    if first not in ("{", "["):
        raise errors.InvalidArgument(f"not a json object or list: {cut(rendered, 200)}")
    try:
        doc = json.loads(rendered)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidArgument(f"the rendered template is not JSON: {cut(str(exc))}") from exc
    if isinstance(doc, dict):
        return [_spec(doc, "the rendered template", ignore_unknown=False)]
    return [_spec(item, f"item {i} of the rendered list", ignore_unknown=True)
            for i, item in enumerate(doc)]  # fmt: skip


def _spec(item: Any, where: str, ignore_unknown: bool) -> pps_pb2.CreatePipelineRequest:
    if not isinstance(item, dict):
        raise errors.InvalidArgument(
            f"{where} is not a pipeline spec (a JSON object): {cut(json.dumps(item), 200)}")
    req = pps_pb2.CreatePipelineRequest()
    try:
        json_format.ParseDict(item, req, ignore_unknown_fields=ignore_unknown)
    except (json_format.ParseError, RecursionError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise errors.InvalidArgument(
            f"{where} is not a pipeline spec: {cut(first_line)}") from exc
    return req
