"""Pure webhook rules: HMAC signatures, basic auth, Azure DevOps push payload and branch filter."""

from __future__ import annotations

import base64
import json

import pytest

from agent.runner.webhook import (
    BasicAuth,
    PayloadError,
    check_basic_auth,
    check_hmac,
    decide_azure,
    decide_generic,
    parse_azure_push,
    parse_basic_auth,
    sign,
)

SECRET = b"s3cret-webhook-key"
AUTH = BasicAuth("azure", "hook-pass")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def azure_push(ref: str = "refs/heads/main", event: str = "git.push") -> bytes:
    # Shape of Azure DevOps' "Code pushed" service-hook payload (trimmed).
    return json.dumps({
        "subscriptionId": "00000000-0000-0000-0000-000000000000",
        "eventType": event,
        "publisherId": "tfs",
        "resource": {
            "refUpdates": [{"name": ref, "oldObjectId": "a" * 40, "newObjectId": "b" * 40}],
            "repository": {"name": "gitops", "remoteUrl": "https://dev.azure.com/o/p/_git/gitops"},
            "pushId": 14,
        },
    }).encode()


def test_hmac_accepts_exact_signature_only() -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = sign(SECRET, body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert check_hmac(SECRET, body, good)
    assert check_hmac(SECRET, body, good.upper().replace("SHA256=", "sha256="))
    assert not check_hmac(SECRET, body + b" ", good)  # body changed
    assert not check_hmac(b"other", body, good)  # wrong key
    assert not check_hmac(SECRET, body, good[7:])  # missing scheme
    assert not check_hmac(SECRET, body, None)
    assert not check_hmac(b"", body, sign(b"", body))  # never accept an empty secret


def test_basic_auth_parsing_and_check() -> None:
    assert parse_basic_auth(basic("u", "p:with:colons")) == ("u", "p:with:colons")
    assert parse_basic_auth("Bearer abc") is None
    assert parse_basic_auth("Basic !!notbase64") is None
    assert parse_basic_auth("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert check_basic_auth(AUTH, basic("azure", "hook-pass"))
    assert not check_basic_auth(AUTH, basic("azure", "wrong"))
    assert not check_basic_auth(AUTH, basic("other", "hook-pass"))
    assert not check_basic_auth(AUTH, None)


def test_basic_auth_password_is_not_in_repr() -> None:
    assert "hook-pass" not in repr(AUTH)


def test_parse_azure_push() -> None:
    push = parse_azure_push(azure_push())
    assert push.event_type == "git.push"
    assert push.refs == ("refs/heads/main",)
    assert push.repository == "gitops"
    with pytest.raises(PayloadError):
        parse_azure_push(b"not json")
    with pytest.raises(PayloadError):
        parse_azure_push(b"[1, 2]")
    with pytest.raises(PayloadError, match="eventType"):
        parse_azure_push(b"{}")


@pytest.mark.parametrize(("header", "body", "status", "trigger"), [
    (basic("azure", "hook-pass"), azure_push(), 202, True),
    (basic("azure", "bad"), azure_push(), 401, False),
    (None, azure_push(), 401, False),
    (basic("azure", "hook-pass"), azure_push(ref="refs/heads/dev"), 202, False),
    (basic("azure", "hook-pass"), azure_push(event="git.pullrequest.created"), 202, False),
    (basic("azure", "hook-pass"), b"{broken", 400, False),
])
def test_decide_azure(header: str | None, body: bytes, status: int, trigger: bool) -> None:
    decision = decide_azure(AUTH, header, body, "main")
    assert (decision.status, decision.trigger) == (status, trigger), decision.reason


def test_unconfigured_endpoints_answer_404_and_trigger_nothing() -> None:
    assert decide_azure(None, basic("a", "b"), azure_push(), "main").status == 404
    assert decide_generic(None, sign(b"x", b""), b"", "main").status == 404


@pytest.mark.parametrize(("body", "trigger"), [
    (b"", True),
    (b'{"ref": "refs/heads/main"}', True),
    (b'{"ref": "main"}', True),
    (b'{"ref": "refs/heads/feature"}', False),
    (b"plain text", True),
])
def test_decide_generic_filters_on_optional_ref(body: bytes, trigger: bool) -> None:
    decision = decide_generic(SECRET, sign(SECRET, body), body, "main")
    assert decision.status == 202 and decision.trigger is trigger


def test_decide_generic_forged_signature_is_401() -> None:
    body = b'{"ref": "refs/heads/main"}'
    decision = decide_generic(SECRET, sign(b"guess", body), body, "main")
    assert (decision.status, decision.trigger) == (401, False)
