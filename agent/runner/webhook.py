"""Pure webhook checks: HMAC signatures with a timestamp, HTTP basic auth, Azure DevOps pushes.

`agent.runner.server` calls `decide_generic` / `decide_azure` with the raw request parts and
turns the returned `WebhookDecision` into an HTTP response (and a sync trigger when asked).
Nothing here does I/O (the clock is passed in), so every rule is unit-tested directly. Secrets
are compared in constant time (`hmac.compare_digest`) so response timing never reveals how much
of a guess was right.

Generic webhook scheme: the sender puts the Unix time in `X-Pachsync-Timestamp` and
`sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` in `X-Pachsync-Signature` (or
`X-Hub-Signature-256`). A timestamp more than `MAX_SKEW_S` away from the agent's clock is refused,
so a captured request cannot be replayed later; within that window `ReplayGuard` remembers the
signatures it accepted, so it cannot be replayed at all. An Azure DevOps push (basic auth, no
signature) is de-duplicated by its event id; replayed or not, it only ever triggers a sync of the
branch's newest commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_HEADER = "X-Pachsync-Signature"
TIMESTAMP_HEADER = "X-Pachsync-Timestamp"
# GitHub and Gitea send the same "sha256=<hex>" format under this name; accepted as an alias
# (with the timestamped scheme: their body-only signature could be replayed forever).
GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
AZURE_PUSH_EVENT = "git.push"
MAX_SKEW_S = 300  # a signed request is valid this long either side of the agent's clock
AZURE_EVENT_TTL_S = 24 * 3600  # how long an Azure DevOps event id is remembered
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class BasicAuth:
    """Expected HTTP basic-auth credentials of the Azure DevOps service hook."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class WebhookDecision:
    """What the server answers (`status`, `reason`) and whether a sync is triggered.

    `delivery` names the delivery (signature or event id) and `expires` when a replay of it
    stops mattering; the server claims it in its `ReplayGuard` before triggering."""

    status: int
    trigger: bool
    reason: str
    delivery: str | None = None
    expires: float = 0.0


class PayloadError(ValueError):
    """The request body is not the expected JSON document."""


def sign(secret: bytes, body: bytes, timestamp: str) -> str:
    """The `X-Pachsync-Signature` value for `body` sent with `X-Pachsync-Timestamp: timestamp`."""
    message = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_hmac(secret: bytes, body: bytes, header: str | None, timestamp: str) -> bool:
    """True when `header` is `sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body)."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    if not timestamp.isascii():
        return False
    expected = sign(secret, body, timestamp).encode()
    given = header.strip().lower()
    return given.isascii() and hmac.compare_digest(expected, given.encode())


def timestamp_problem(raw: str | None, now: float) -> str | None:
    """Why an `X-Pachsync-Timestamp` value is unacceptable at `now`, or None when it is fresh."""
    if raw is None or not raw.strip():
        return (f"missing {TIMESTAMP_HEADER}: sign timestamp + '.' + body and send the "
                "Unix time in that header")
    if not _TIMESTAMP.fullmatch(raw.strip()):
        return f"{TIMESTAMP_HEADER} is not a Unix time in seconds"
    skew = int(raw.strip()) - now
    if abs(skew) > MAX_SKEW_S:
        return (f"{TIMESTAMP_HEADER} is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} "
                f"the agent's clock (more than {MAX_SKEW_S} s): sign a fresh request, check clocks")
    return None


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """(username, password) from an `Authorization: Basic …` header, None when malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def check_basic_auth(expected: BasicAuth, header: str | None) -> bool:
    """True when the header carries exactly the expected username and password."""
    given = parse_basic_auth(header)
    if given is None:
        return False
    # Both comparisons always run: no early exit that would time-leak the username.
    user_ok = hmac.compare_digest(given[0].encode(), expected.username.encode())
    pass_ok = hmac.compare_digest(given[1].encode(), expected.password.encode())
    return user_ok and pass_ok


def ref_matches(ref: str, branch: str) -> bool:
    """A pushed ref (`refs/heads/main` or `main`) names the watched branch."""
    return ref in (branch, f"refs/heads/{branch}")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    except RecursionError:
        # json's scanner recurses once per level: 200,000 `[` would otherwise escape as an
        # exception and drop the connection instead of answering.
        raise PayloadError("body is nested too deeply to be a webhook payload") from None
    if not isinstance(doc, dict):
        raise PayloadError("body is not a JSON object")
    return doc


@dataclass(frozen=True)
class AzurePush:
    """The parts of an Azure DevOps `git.push` ("code pushed") event the agent uses."""

    event_type: str
    refs: tuple[str, ...]
    repository: str
    event_id: str = ""


def parse_azure_push(body: bytes) -> AzurePush:
    """Parse a service-hook payload: id, eventType, and for a push resource.refUpdates[].name
    (a list of objects with string names: any other shape is a PayloadError) and repository."""
    doc = _json_object(body)
    event_type = doc.get("eventType")
    if not isinstance(event_type, str):
        raise PayloadError("missing eventType")
    event_id = doc.get("id")
    event_id = event_id if isinstance(event_id, str) else ""
    if event_type != AZURE_PUSH_EVENT:
        return AzurePush(event_type=event_type, refs=(), repository="", event_id=event_id)
    resource = _sub(doc, "resource", "")
    updates = resource.get("refUpdates")
    if not isinstance(updates, list):
        raise PayloadError("resource.refUpdates of a git.push is not a list")
    refs = []
    for i, update in enumerate(updates):
        name = update.get("name") if isinstance(update, dict) else None
        if not isinstance(name, str):
            raise PayloadError(f"resource.refUpdates[{i}].name is not a string")
        refs.append(name)
    name = _sub(resource, "repository", "resource.").get("name")
    return AzurePush(event_type=event_type, refs=tuple(refs),
                     repository=name if isinstance(name, str) else "", event_id=event_id)


def _sub(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise PayloadError(f"{where}{key} is not a JSON object")
    return value


def decide_azure(expected: BasicAuth | None, auth_header: str | None, body: bytes,
                 branch: str, now: float) -> WebhookDecision:
    """Answer an Azure DevOps service-hook call: 401 on bad auth, trigger on a push to branch."""
    if expected is None:
        return WebhookDecision(404, False,
                               "azure-devops webhook not configured (--basic-auth-file)")
    if not check_basic_auth(expected, auth_header):
        return WebhookDecision(401, False, "invalid credentials")
    try:
        push = parse_azure_push(body)
    except PayloadError as exc:
        return WebhookDecision(400, False, str(exc))
    if push.event_type != AZURE_PUSH_EVENT:
        return WebhookDecision(202, False, f"ignored event {push.event_type!r}")
    if not any(ref_matches(ref, branch) for ref in push.refs):
        return WebhookDecision(202, False, f"ignored: push does not touch branch {branch!r}")
    return WebhookDecision(202, True, f"push to {branch} in {push.repository or 'repository'}",
                           delivery=f"azure:{push.event_id}" if push.event_id else None,
                           expires=now + AZURE_EVENT_TTL_S)


def decide_generic(secret: bytes | None, signature: str | None, timestamp: str | None,
                   body: bytes, branch: str, now: float) -> WebhookDecision:
    """Answer a generic signed POST: 401 on a bad signature or a stale/missing timestamp, 400 on
    a JSON body of the wrong shape; an optional JSON `ref` must name the branch."""
    if not secret:
        return WebhookDecision(404, False, "generic webhook not configured (--webhook-secret-file)")
    problem = timestamp_problem(timestamp, now)
    if problem is None and not check_hmac(secret, body, signature, (timestamp or "").strip()):
        problem = "invalid signature"
    if problem is not None:
        return WebhookDecision(401, False, problem)
    try:
        ref = _optional_ref(body)
    except PayloadError as exc:
        return WebhookDecision(400, False, str(exc))
    if ref is not None and not ref_matches(ref, branch):
        return WebhookDecision(202, False, f"ignored: ref {ref!r} is not branch {branch!r}")
    stamp = int((timestamp or "0").strip())
    delivery = "hmac:" + (signature or "").strip().lower()
    return WebhookDecision(202, True, "signed trigger", delivery=delivery,
                           expires=stamp + MAX_SKEW_S)


def _optional_ref(body: bytes) -> str | None:
    """The `ref` of a JSON body if it has one. An empty or non-JSON body (plain text) means no
    filter; a body that starts like JSON (`{` or `[`) must be an object whose `ref`, if any, is a
    string (PayloadError otherwise)."""
    if body.lstrip()[:1] not in (b"{", b"["):
        return None
    ref = _json_object(body).get("ref")
    if ref is not None and not isinstance(ref, str):
        raise PayloadError("ref is not a string")
    return ref


class ReplayGuard:
    """Deliveries already acted on, each until it expires; bounded (oldest forgotten first).

    `claim` is atomic, so two copies of one delivery arriving together trigger one sync."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, delivery: str, expires: float, now: float) -> bool:
        """True (and remembered) when `delivery` is new or expired; False for a replay."""
        with self._lock:
            for key, until in list(self._seen.items()):
                if until > now:
                    break  # insertion order ~ expiry order; stop at the first live entry
                del self._seen[key]
            if self._seen.get(delivery, 0.0) > now:
                return False
            self._seen[delivery] = expires
            self._seen.move_to_end(delivery)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True

    def release(self, delivery: str) -> None:
        """Forget a claim whose sync could not be triggered, so a retry is not a replay."""
        with self._lock:
            self._seen.pop(delivery, None)
