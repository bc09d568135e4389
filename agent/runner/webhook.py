"""Pure webhook checks: HMAC signatures, HTTP basic auth, Azure DevOps push payloads.

`agent.runner.server` calls `decide_generic` / `decide_azure` with the raw request parts and
turns the returned `WebhookDecision` into an HTTP response (and a sync trigger when asked).
Nothing here does I/O, so every rule is unit-tested directly. Secrets are compared in constant
time (`hmac.compare_digest`) so response timing never reveals how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_HEADER = "X-Pachsync-Signature"
# GitHub and Gitea send the same "sha256=<hex>" format under this name; accepted as an alias.
GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
AZURE_PUSH_EVENT = "git.push"


@dataclass(frozen=True)
class BasicAuth:
    """Expected HTTP basic-auth credentials of the Azure DevOps service hook."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class WebhookDecision:
    """What the server answers (`status`, `reason`) and whether a sync is triggered."""

    status: int
    trigger: bool
    reason: str


class PayloadError(ValueError):
    """The request body is not the expected JSON document."""


def sign(secret: bytes, body: bytes) -> str:
    """The header value a sender puts in `X-Pachsync-Signature` for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_hmac(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is `sha256=<hex>` of HMAC-SHA256(secret, raw body)."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = sign(secret, body).encode()
    return hmac.compare_digest(expected, header.strip().lower().encode())


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
    if not isinstance(doc, dict):
        raise PayloadError("body is not a JSON object")
    return doc


@dataclass(frozen=True)
class AzurePush:
    """The parts of an Azure DevOps `git.push` ("code pushed") event the agent uses."""

    event_type: str
    refs: tuple[str, ...]
    repository: str


def parse_azure_push(body: bytes) -> AzurePush:
    """Parse a service-hook payload: eventType, resource.refUpdates[].name, repository name."""
    doc = _json_object(body)
    event_type = doc.get("eventType")
    if not isinstance(event_type, str):
        raise PayloadError("missing eventType")
    resource = _sub(doc, "resource")
    updates = resource.get("refUpdates")
    refs = tuple(u["name"] for u in (updates if isinstance(updates, list) else [])
                 if isinstance(u, dict) and isinstance(u.get("name"), str))
    name = _sub(resource, "repository").get("name")
    return AzurePush(event_type=event_type, refs=refs,
                     repository=name if isinstance(name, str) else "")


def _sub(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def decide_azure(expected: BasicAuth | None, auth_header: str | None, body: bytes,
                 branch: str) -> WebhookDecision:
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
    return WebhookDecision(202, True, f"push to {branch} in {push.repository or 'repository'}")


def decide_generic(secret: bytes | None, signature: str | None, body: bytes,
                   branch: str) -> WebhookDecision:
    """Answer a generic signed POST: 401 on a bad signature; an optional JSON `ref` must match."""
    if not secret:
        return WebhookDecision(404, False, "generic webhook not configured (--webhook-secret-file)")
    if not check_hmac(secret, body, signature):
        return WebhookDecision(401, False, "invalid signature")
    ref = _optional_ref(body)
    if ref is not None and not ref_matches(ref, branch):
        return WebhookDecision(202, False, f"ignored: ref {ref!r} is not branch {branch!r}")
    return WebhookDecision(202, True, "signed trigger")


def _optional_ref(body: bytes) -> str | None:
    """The `ref` of a JSON body if it has one; any other body (empty, text) means no filter."""
    try:
        doc = _json_object(body)
    except PayloadError:
        return None
    ref = doc.get("ref")
    return ref if isinstance(ref, str) else None
