"""The generic notification sink: one signed JSON document per state change, to `--notify-url`.

PURE (building the document and its signature); `agent.notify.dispatch` sends it. Signed like
the agent's own inbound generic webhook (`agent.runner.webhook`), so one receiver can check
both: `X-Pachsync-Timestamp: <Unix seconds>` and `X-Pachsync-Signature: sha256=<hex
HMAC-SHA256(secret, timestamp + "." + body)>`. The signature is computed when the request is
sent (each retry gets a fresh timestamp, never one the receiver's replay window refuses).

Event document (`schema` 1): `{"schema", "kind": "sync"|"health", "commit", "state",
"message", "pipelines": [{"name", "sync", "health", "reason"}], "source", "branch", "time"}`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict
from typing import Any

from agent.notify.events import Event
from agent.util.safetext import json_dumps, one_line

# The same names and scheme as agent.runner.webhook (checked by tests/unit/test_notify_sink.py).
SIGNATURE_HEADER = "X-Pachsync-Signature"
TIMESTAMP_HEADER = "X-Pachsync-Timestamp"
SCHEMA = 1
MESSAGE_MAX = 2000


def event_document(event: Event, source: str, branch: str, now: float) -> dict[str, Any]:
    """The JSON object sent for `event` (texts from specs made one printable line each)."""
    return {
        "schema": SCHEMA, "kind": event.context, "commit": event.commit, "state": event.state,
        "message": one_line(event.message)[:MESSAGE_MAX],
        "pipelines": [{k: one_line(str(v)) for k, v in asdict(p).items()}
                      for p in event.pipelines],
        "source": source, "branch": branch, "time": round(now, 3),
    }


def event_body(event: Event, source: str, branch: str, now: float) -> bytes:
    return json_dumps(event_document(event, source, branch, now), sort_keys=True).encode()


def signature(secret: bytes, body: bytes, timestamp: str) -> str:
    """`sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: bytes, body: bytes, now: float) -> dict[str, str]:
    stamp = str(int(now))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, body, stamp)}
