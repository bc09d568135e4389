"""Pure webhook rules: timestamped HMAC signatures, basic auth, Azure DevOps push payload and
branch filter, payload shapes (depth, types) and the replay guard."""

from __future__ import annotations

import base64
import hmac
import json

import pytest

from agent.runner.webhook import (
    MAX_SKEW_S,
    BasicAuth,
    PayloadError,
    ReplayGuard,
    check_basic_auth,
    check_hmac,
    decide_azure,
    decide_generic,
    parse_azure_push,
    parse_basic_auth,
    sign,
    timestamp_problem,
)

SECRET = b"s3cret-webhook-key"
AUTH = BasicAuth("azure", "hook-pass")
NOW = 1_800_000_000.0
TS = str(int(NOW))


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
    good = sign(SECRET, body, TS)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert good == "sha256=" + hmac.new(SECRET, TS.encode() + b"." + body, "sha256").hexdigest()
    assert check_hmac(SECRET, body, good, TS)
    assert check_hmac(SECRET, body, good.upper().replace("SHA256=", "sha256="), TS)
    assert not check_hmac(SECRET, body + b" ", good, TS)  # body changed
    assert not check_hmac(SECRET, body, good, str(int(NOW) + 1))  # timestamp changed
    assert not check_hmac(b"other", body, good, TS)  # wrong key
    assert not check_hmac(SECRET, body, good[7:], TS)  # missing scheme
    assert not check_hmac(SECRET, body, None, TS)
    assert not check_hmac(SECRET, body, good + "\u00e9", TS)  # non-ASCII never raises
    assert not check_hmac(b"", body, sign(b"", body, TS), TS)  # never accept an empty secret


@pytest.mark.parametrize(("raw", "fresh"), [
    (TS, True), (str(int(NOW) - MAX_SKEW_S), True), (str(int(NOW) + MAX_SKEW_S), True),
    (str(int(NOW) - MAX_SKEW_S - 1), False), (str(int(NOW) + MAX_SKEW_S + 1), False),
    (None, False), ("", False), ("  ", False), ("-5", False), ("1.5e9", False),
    ("9" * 40, False), ("\u0661\u0662", False),  # Arabic-Indic digits are not a timestamp
])
def test_timestamp_must_be_a_fresh_unix_time(raw: str | None, fresh: bool) -> None:
    assert (timestamp_problem(raw, NOW) is None) is fresh


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
    decision = decide_azure(AUTH, header, body, "main", NOW)
    assert (decision.status, decision.trigger) == (status, trigger), decision.reason


@pytest.mark.parametrize("body", [
    b"[" * 200_000, b'{"a":' * 100_000, b'{"eventType": "git.push", "resource": []}',
    b'{"eventType": "git.push", "resource": {}}',
    b'{"eventType": "git.push", "resource": {"refUpdates": "refs/heads/main"}}',
    b'{"eventType": "git.push", "resource": {"refUpdates": [{"name": ["x"]}]}}',
    b'{"eventType": "git.push", "resource": {"refUpdates": [], "repository": "r"}}',
    b'{"eventType": 1}', b"\xff", b"",
])
def test_azure_payloads_of_the_wrong_shape_or_depth_are_400(body: bytes) -> None:
    decision = decide_azure(AUTH, basic("azure", "hook-pass"), body, "main", NOW)
    assert (decision.status, decision.trigger) == (400, False), decision.reason


def test_azure_push_names_its_event_for_deduplication() -> None:
    body = json.loads(azure_push())
    body["id"] = "e1"
    decision = decide_azure(AUTH, basic("azure", "hook-pass"), json.dumps(body).encode(),
                            "main", NOW)
    assert decision.trigger and decision.delivery == "azure:e1" and decision.expires > NOW
    assert decide_azure(AUTH, basic("azure", "hook-pass"), azure_push(), "main",
                        NOW).delivery is None  # no id: nothing to de-duplicate by


def test_unconfigured_endpoints_answer_404_and_trigger_nothing() -> None:
    assert decide_azure(None, basic("a", "b"), azure_push(), "main", NOW).status == 404
    assert decide_generic(None, sign(b"x", b"", TS), TS, b"", "main", NOW).status == 404


@pytest.mark.parametrize(("body", "trigger"), [
    (b"", True),
    (b'{"ref": "refs/heads/main"}', True),
    (b'{"ref": "main"}', True),
    (b'{"ref": "refs/heads/feature"}', False),
    (b"plain text", True),
])
def test_decide_generic_filters_on_optional_ref(body: bytes, trigger: bool) -> None:
    decision = decide_generic(SECRET, sign(SECRET, body, TS), TS, body, "main", NOW)
    assert decision.status == 202 and decision.trigger is trigger


@pytest.mark.parametrize("body", [b'{"ref": 5}', b'{"ref": null, "x": [}', b"[1, 2]",
                                  b"  [" * 100_000, b'{"ref": "main"'])
def test_decide_generic_json_of_the_wrong_shape_or_depth_is_400(body: bytes) -> None:
    decision = decide_generic(SECRET, sign(SECRET, body, TS), TS, body, "main", NOW)
    assert (decision.status, decision.trigger) == (400, False), decision.reason


def test_decide_generic_forged_signature_is_401() -> None:
    body = b'{"ref": "refs/heads/main"}'
    decision = decide_generic(SECRET, sign(b"guess", body, TS), TS, body, "main", NOW)
    assert (decision.status, decision.trigger) == (401, False)


@pytest.mark.parametrize(("stamp", "now"), [
    (None, NOW), (TS, NOW + MAX_SKEW_S + 1), (TS, NOW - MAX_SKEW_S - 1)])
def test_decide_generic_stale_or_missing_timestamp_is_401(stamp: str | None, now: float) -> None:
    body = b"{}"
    decision = decide_generic(SECRET, sign(SECRET, body, stamp or TS), stamp, body, "main", now)
    assert (decision.status, decision.trigger) == (401, False)
    assert "X-Pachsync-Timestamp" in decision.reason


def test_replay_guard_claims_once_until_expiry_and_stays_bounded() -> None:
    guard = ReplayGuard(capacity=3)
    assert guard.claim("a", NOW + 10, NOW) and not guard.claim("a", NOW + 10, NOW + 5)
    assert guard.claim("a", NOW + 30, NOW + 11)  # expired: a new delivery
    guard.release("a")
    assert guard.claim("a", NOW + 30, NOW + 12)  # released (its sync never started)
    for key in "bcde":
        assert guard.claim(key, NOW + 100, NOW + 12)
    assert len(guard._seen) == 3  # the oldest were forgotten first
    assert not guard.claim("e", NOW + 100, NOW + 13)
