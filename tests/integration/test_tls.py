"""TLS end to end: `localpachd serve --tls-cert/--tls-key`, then `pachsync apply` and `status`
over grpcs:// trusting the server's self-signed certificate through PACHSYNC_CA_FILE.

Also proves the failures are one clear line with a hint, not a hang or a traceback: a plaintext
client against the TLS port, a TLS client that does not trust the certificate, half a key pair.
The certificate is made with the openssl CLI (python `cryptography` is not a dependency); without
openssl the tests are skipped, saying why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl CLI is needed to make a "
                                                        "self-signed test certificate")

REPOS = "repos:\n  - name: words\n    description: tiny input\n"
PIPELINE = """pipeline:
  name: upper
description: copies words
transform:
  image: example.azurecr.io/tiny:1.0.0
  cmd: [python3, -c, "print('hi')"]
input:
  pfs:
    repo: words
    glob: /*
"""


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([str(OPENSSL), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_server(cert: tuple[Path, Path], tmp_path: Path) -> Iterator[int]:
    """`localpachd serve` with TLS, as a real subprocess on a free port; yields the port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "localpachd", "serve", "--port", "0",
         "--data-dir", str(tmp_path / "pachd"), "--tls-cert", str(cert[0]),
         "--tls-key", str(cert[1])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line and "TLS" in line, line
        yield int(line.split("listening on 127.0.0.1:")[1].split()[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _specs(tmp_path: Path) -> str:
    specs = tmp_path / "specs"
    (specs / "pipelines").mkdir(parents=True)
    (specs / "repos.yaml").write_text(REPOS)
    (specs / "pipelines" / "upper.yaml").write_text(PIPELINE)
    return str(specs)


def _run(capsys: Any, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_apply_and_status_over_grpcs(tls_server: int, cert: tuple[Path, Path], tmp_path: Path,
                                     capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHSYNC_CA_FILE", str(cert[0]))
    monkeypatch.setenv("PACHSYNC_RPC_TIMEOUT", "20")
    addr = f"grpcs://localhost:{tls_server}"
    code, out = _run(capsys, "apply", "--pachd", addr, "--specs", _specs(tmp_path))
    assert code == 0, out
    assert "1 pipeline(s) created/updated in one transaction" in out
    code, out = _run(capsys, "status", "--pachd", addr, "--no-specs", "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["pachd"] == addr
    assert [(r["name"], r["sync"]) for r in data["pipelines"]] == [("upper", "Synced")]
    # the IP address is in the certificate too
    code, out = _run(capsys, "status", "--pachd", f"grpcs://127.0.0.1:{tls_server}")
    assert code == 0 and "upper" in out, out


def test_plaintext_client_against_tls_fails_clearly(tls_server: int, capsys: Any) -> None:
    code, out = _run(capsys, "status", "--pachd", f"grpc://127.0.0.1:{tls_server}")
    assert code == 2
    assert "Traceback" not in out
    assert "cannot reach pachd at grpc://127.0.0.1" in out
    assert "if it serves TLS, use grpcs://HOST:PORT" in out, out


def test_untrusted_certificate_fails_clearly(tls_server: int, capsys: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PACHSYNC_CA_FILE", raising=False)
    code, out = _run(capsys, "status", "--pachd", f"grpcs://localhost:{tls_server}")
    assert code == 2 and "Traceback" not in out
    assert "certificate is not trusted: set PACHSYNC_CA_FILE" in out, out


def test_bad_ca_file_is_a_usage_error(tmp_path: Path, capsys: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHSYNC_CA_FILE", str(tmp_path / "missing.pem"))
    code, out = _run(capsys, "status", "--pachd", "grpcs://localhost:1")
    assert code == 2 and "cannot read PACHSYNC_CA_FILE" in out and "Traceback" not in out
    (tmp_path / "junk.pem").write_text("not a certificate")
    monkeypatch.setenv("PACHSYNC_CA_FILE", str(tmp_path / "junk.pem"))
    code, out = _run(capsys, "status", "--pachd", "grpcs://localhost:1")
    assert code == 2 and "is not a PEM file" in out


def test_serve_refuses_half_a_key_pair(cert: tuple[Path, Path], tmp_path: Path) -> None:
    from localpachd.server import start

    with pytest.raises(OSError, match="both a certificate and a key"):
        start(tmp_path / "d", tls_cert=cert[0])
    proc = subprocess.run([sys.executable, "-m", "localpachd", "serve", "--port", "0",
                           "--data-dir", str(tmp_path / "d"), "--tls-cert", str(cert[0]),
                           "--tls-key", str(tmp_path / "nokey.pem")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot read TLS key" in proc.stderr and "Traceback" not in proc.stderr


def test_in_process_start_with_tls(cert: tuple[Path, Path], tmp_path: Path) -> None:
    import python_pachyderm

    from localpachd.server import start

    with start(tmp_path / "d", tls_cert=cert[0], tls_key=cert[1]) as server:
        assert server.tls
        client = python_pachyderm.Client("localhost", server.port, tls=True,
                                         root_certs=cert[0].read_bytes())
        client.create_repo("r")
        assert [r.repo.name for r in client.list_repo()] == ["r"]


def test_pachctl_config_with_server_cas(tls_server: int, cert: tuple[Path, Path], tmp_path: Path,
                                        capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No flag, no env: the active pachctl context's grpcs:// address and base64 server_cas."""
    import base64

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"v2": {"active_context": "tls", "contexts": {"tls": {
        "pachd_address": f"grpcs://localhost:{tls_server}",
        "server_cas": base64.b64encode(cert[0].read_bytes()).decode()}}}}))
    monkeypatch.setenv("PACH_CONFIG", str(config))
    monkeypatch.delenv("PACHSYNC_CA_FILE", raising=False)
    code, out = _run(capsys, "status", "--no-specs", "--format", "json")
    assert code == 0, out
    assert json.loads(out) == {"pachd": f"grpcs://localhost:{tls_server}", "desired": None,
                               "pipelines": []}
