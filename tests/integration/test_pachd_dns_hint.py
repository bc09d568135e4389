"""A pachd host name that does not resolve is reported as a name problem, never as TLS.

The bug: `--pachd grpc://no-such-host.invalid:30650` said "pachd's TLS certificate does not name
this host" because gRPC's resolver text ("field:hostname lookup error") contains "hostname".
The first test makes real gRPC calls (the `.invalid` top-level domain never resolves: RFC 6761);
the second pins the hint for every wording gRPC's resolvers (c-ares and native) and TLS checks use.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.cli import main
from agent.cluster.address import PachdTarget
from agent.cluster.client import _unreachable_hint

DNS_TEXTS = [  # what gRPC says when the name does not resolve, by resolver and version
    "errors resolving no-such-host.invalid:30650: [field:hostname lookup error:address lookup "
    "failed for no-such-host.invalid:30650: Domain name not found]",
    "DNS resolution failed for no-such-host.invalid:30650: C-ares status is not ARES_SUCCESS "
    "qtype=A name=no-such-host.invalid is_balancer=0: Domain name not found",
    "DNS resolution failed for service: no-such-host.invalid:30650",
    "failed to connect to all addresses; last error: UNAVAILABLE: Name or service not known",
    "Temporary failure in name resolution",
]
TLS_NAME_TEXTS = [
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Custom "
    "verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed.",
    "Peer name pachd.example.com is not in peer certificate",
]


@pytest.mark.parametrize("scheme", ["grpc", "grpcs"])
def test_unresolvable_host_is_a_name_problem(scheme: str, capsys: Any) -> None:
    code = main(["status", "--no-specs", "--pachd", f"{scheme}://no-such-host.invalid:30650"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2 and "Traceback" not in text
    assert "cannot resolve the host name 'no-such-host.invalid'" in text, text
    assert "TLS" not in text and "certificate" not in text, text


@pytest.mark.parametrize("tls", [False, True])
def test_hints_tell_names_from_certificates(tls: bool) -> None:
    target = PachdTarget("no-such-host.invalid", 30650, tls)
    for text in DNS_TEXTS:
        hint = _unreachable_hint(text, target)
        assert hint.startswith("cannot resolve the host name"), (text, hint)
    for text in TLS_NAME_TEXTS:
        assert "certificate does not name this host" in _unreachable_hint(text, target), text
