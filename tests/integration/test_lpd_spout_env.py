"""A spout gets what a Pachyderm 2.7 spout container gets to talk to pachd, on a real localpachd.

2.7 (src/server/pps/server/worker_rc.go: workerPodSpec, createWorkerPachctlSecret) mounts a
pachctl config at /pachctl/config.json holding the pipeline's auth token and pachd's address, and
gives the container `transform.secrets` as env vars and files at their mount paths. Here: the
server's token when auth is on (in that config, also named by PACH_CONFIG, and in
PACH_PYTHON_AUTH_TOKEN so python-pachyderm's `Client.new_in_cluster()` can write), the server's
TLS address and certificate in that config, and the secrets as datums get them. Each spout is a
real python3 process using python-pachyderm; it commits one file per way it reached the server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from helpers.wait import wait_for
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import runtime_pfsmount
from localpachd.server import RunningServer, start

SPOUT = """
import os, time
import python_pachyderm
repo = os.environ["PPS_PIPELINE_NAME"]

def write(client, name, data=b"x"):
    with client.commit(repo, "master") as c:
        client.put_file_bytes(c, name, data)

mode = os.environ["MODE"]
if mode == "auth":
    write(python_pachyderm.Client.new_in_cluster(), "/new-in-cluster")
    write(python_pachyderm.Client(), "/pach-config")
    if os.path.isfile("/pachctl/config.json"):  # namespace mode: where 2.7 mounts it
        del os.environ["PACH_CONFIG"]
        write(python_pachyderm.Client(), "/pachctl")
elif mode == "tls":
    write(python_pachyderm.Client(), "/tls")
elif mode == "secrets":
    client = python_pachyderm.Client()
    write(client, "/env", os.environ["PASSWORD"].encode())
    with open(os.path.join(os.environ["SECRET_DIR"], "password"), "rb") as f:
        write(client, "/file", f.read())
    if os.path.isdir("/spout-secret"):  # a hard-coded mount path: namespace mode only
        with open("/spout-secret/password", "rb") as f:
            write(client, "/literal", f.read())
while True:
    time.sleep(1)
"""

TOKEN = "spout-test-token-0123456789"
OPENSSL = shutil.which("openssl")


def files(client: Any, repo: str) -> list[str]:
    try:
        return sorted(f.file.path for f in client.list_file((repo, "master"), "/"))
    except grpc.RpcError:
        return []


def content(client: Any, repo: str, path: str) -> bytes:
    return bytes(client.get_file((repo, "master"), path).read())


def spout(client: Any, tmp_path: Path, mode: str, **transform: Any) -> None:
    script = tmp_path / "spout.py"
    script.write_text(SPOUT)
    env = {"MODE": mode, **transform.pop("env", {})}
    client.create_pipeline(
        "sp", spout=pps_pb2.Spout(),
        transform=pps_pb2.Transform(cmd=[sys.executable, str(script)], env=env, **transform))


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    s = start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0, **request.param)
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("server", [{"auth_token": TOKEN}], indirect=True)
def test_a_spout_writes_with_the_servers_token(server: RunningServer, tmp_path: Path) -> None:
    client = python_pachyderm.Client(host=server.host, port=server.port, auth_token=TOKEN)
    spout(client, tmp_path, "auth")
    want = ["/new-in-cluster", "/pach-config"]
    if runtime_pfsmount.mode() == runtime_pfsmount.NAMESPACE:
        want.append("/pachctl")
    got = wait_for(lambda: files(client, "sp") == sorted(want) and files(client, "sp"),
                   lambda: f"{want}, saw {files(client, 'sp')}")  # fmt: skip
    assert got == sorted(want)
    config = tmp_path / "pachd" / "longrun" / "default" / "sp" / "pachctl" / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert config.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("server", [{}], indirect=True)
def test_a_spout_gets_its_secrets(server: RunningServer, tmp_path: Path) -> None:
    client = python_pachyderm.Client(host=server.host, port=server.port)
    client.create_secret("creds", {"password": b"hunter2"})
    spout(client, tmp_path, "secrets", env={"SECRET_DIR": "/spout-secret"}, secrets=[
        pps_pb2.SecretMount(name="creds", key="password", env_var="PASSWORD"),
        pps_pb2.SecretMount(name="creds", mount_path="/spout-secret")])  # fmt: skip
    want = ["/env", "/file"]
    if runtime_pfsmount.mode() == runtime_pfsmount.NAMESPACE:
        want.append("/literal")
    wait_for(lambda: files(client, "sp") == sorted(want),
             lambda: f"{want}, saw {files(client, 'sp')}")  # fmt: skip
    assert {content(client, "sp", p) for p in want} == {b"hunter2"}
    info = next(iter(client.inspect_pipeline("sp", details=True)))
    assert b"hunter2" not in info.SerializeToString()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if OPENSSL is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip
    return crt, key


def test_a_spout_reaches_a_tls_server(cert: tuple[Path, Path], tmp_path: Path) -> None:
    s = start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0, auth_token=TOKEN,
              tls_cert=cert[0], tls_key=cert[1])  # fmt: skip
    try:
        client = python_pachyderm.Client(host=s.host, port=s.port, auth_token=TOKEN,
                                         root_certs=cert[0].read_bytes())  # fmt: skip
        spout(client, tmp_path, "tls")
        wait_for(lambda: files(client, "sp") == ["/tls"], lambda: f"saw {files(client, 'sp')}")
    finally:
        s.stop()
