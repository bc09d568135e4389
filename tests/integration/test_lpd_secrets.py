"""Secrets (issue 16, item 3): Create/Inspect/List/DeleteSecret as Pachyderm 2.7 answers them,
and `transform.secrets` reaching datums as env vars and as files under a mount path.

Real localpachd (a `serve` subprocess whose whole output is kept, or in process), the real
python-pachyderm client, datums as real `sh` processes. The secret's value is random per test
and must appear nowhere but in the secret's own file and in what the datum chose to write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from helpers.jobs import state
from helpers.pachd import HOST, stop
from helpers.pfs import put, read_repo
from helpers.wait import wait_for
from hypothesis import given
from hypothesis import strategies as st
from lpd_pps_helpers import last_job, pfs, sh_pipeline
from python_pachyderm.proto.v2.pps import pps_pb2, pps_pb2_grpc

from localpachd import errors, secrets

LISTENING = "listening on "


def _serve(data_dir: Path, log: Path, port: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """A `serve` subprocess at DEBUG whose every output byte goes to `log` (appended)."""
    out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "localpachd", "serve", "--port", str(port), "--data-dir",
         str(data_dir), "--log-level", "DEBUG", "--runtime", "subprocess"],
        stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    out.close()

    def bound() -> int | None:
        text = log.read_text(errors="replace")
        idx = text.rfind(LISTENING)
        if idx < 0 or proc.poll() is not None:
            assert proc.poll() is None, f"localpachd exited: {text}"
            return None
        tail = text[idx + len(LISTENING) :].split()[0]
        return int(tail.rsplit(":", 1)[1])

    if port:  # a restart on the same port: wait for the second "listening on"
        before = log.read_text(errors="replace").count(LISTENING)
        wait_for(lambda: log.read_text(errors="replace").count(LISTENING) > before,
                 "localpachd to listen again")  # fmt: skip
    return proc, wait_for(bound, "localpachd to listen")


def _value() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _mounted_pipeline(c: Any, name: str) -> None:
    """Writes what the datum saw: hashes of the env var and of the mounted files, the modes;
    /etc/creds reached through the spec's env too, /etc/tok from a second secret."""
    sh_pipeline(
        c, name, pfs("in", "/*"),
        "set -e",
        'printf %s "$PASSWORD" | sha256sum | cut -c1-64 > /pfs/out/env_sha',
        'sha256sum < "$CREDS/password" | cut -c1-64 > /pfs/out/file_sha',
        "sha256sum < /etc/tok/token | cut -c1-64 > /pfs/out/token_sha",
        "ls /etc/creds > /pfs/out/keys",
        "stat -c %a /etc/creds/password > /pfs/out/file_mode",
        "stat -c %a /etc/creds > /pfs/out/dir_mode",
        "echo /etc/creds > /pfs/out/where",
        "echo datum ran",
        transform={
            "env": {"CREDS": "/etc/creds"},
            "secrets": [
                pps_pb2.SecretMount(name="creds", key="password", env_var="PASSWORD"),
                pps_pb2.SecretMount(name="creds", mount_path="/etc/creds"),
                pps_pb2.SecretMount(name="creds2", mount_path="/etc/tok"),
            ],
        },
    )  # fmt: skip


def _create(c: Any, name: str, data: dict[str, str], string_data: dict[str, str] | None = None,
            **meta: Any) -> None:  # fmt: skip
    doc: dict[str, Any] = {"kind": "Secret", "apiVersion": "v1",
                           "metadata": {"name": name, **meta},
                           "data": {k: base64.b64encode(v.encode()).decode()
                                    for k, v in data.items()}}  # fmt: skip
    if string_data is not None:
        doc["stringData"] = string_data
    _raw_create(c, json.dumps(doc).encode())


def _raw_create(c: Any, file: bytes) -> None:
    """CreateSecret with any `file` (python-pachyderm's create_secret sends only `data`)."""
    pps_pb2_grpc.APIStub(c._channel).CreateSecret(pps_pb2.CreateSecretRequest(file=file))


def _files_under(root: Path, skip: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and skip not in p.parents]


def test_datum_sees_secret_as_env_and_file_the_value_nowhere_else_and_survives_restart(
    tmp_path: Path,
) -> None:
    data_dir, log = tmp_path / "pachd", tmp_path / "server.log"
    password, token = _value(), _value()
    proc, port = _serve(data_dir, log)
    try:
        c = python_pachyderm.Client(host=HOST, port=port)
        c.create_secret("creds", {"password": password})
        stop(proc)  # the secret must survive a restart
        proc, port = _serve(data_dir, log, port)
        c = python_pachyderm.Client(host=HOST, port=port)
        assert [s.secret.name for s in c.list_secret()] == ["creds"]
        _create(c, "creds2", {}, {"token": token})  # stringData: plain, as Kubernetes takes it
        c.create_repo("in")
        put(c, "in", {"a": "1"})
        _mounted_pipeline(c, "use")
        job = last_job(c, "use")
        assert state(job) == "JOB_SUCCESS", job.reason
        out = {k.lstrip("/"): v for k, v in read_repo(c, "use").items()}
        assert out["env_sha"].strip() == _sha(password)
        assert out["file_sha"].strip() == _sha(password)
        assert out["token_sha"].strip() == _sha(token)
        assert out["keys"].split() == ["password"]
        assert (out["file_mode"].strip(), out["dir_mode"].strip()) == ("600", "700")
        mount = Path(out["where"].strip())
        assert mount != Path("/etc/creds") and not mount.exists()  # removed after the datum
        logs = "".join(m.message for m in c.get_pipeline_logs("use"))
        assert "datum ran" in logs
        answers = [*c.inspect_pipeline("use", details=True), c.inspect_secret("creds"),
                   *c.list_secret(), *c.list_pipeline(details=True)]  # fmt: skip
        wire = b"".join(a.SerializeToString() for a in answers) + logs.encode()
    finally:
        stop(proc)
    secrets_dir = data_dir / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    stored = sorted(secrets_dir.iterdir())
    assert [p.name for p in stored] == ["creds.json", "creds2.json"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored)
    for value in (password, token):
        for form in (value.encode(), base64.b64encode(value.encode())):
            assert form not in wire
            assert form not in log.read_bytes()
            for f in _files_under(data_dir, secrets_dir):  # SQLite, WAL, datum logs, blobs
                assert form not in f.read_bytes(), f


def test_secret_calls_answer_as_pachyderm(pach_client: Any) -> None:
    c = pach_client
    value = _value()
    c.create_secret("a-secret", {"k": value}, labels={"team": "x"})
    info = c.inspect_secret("a-secret")
    assert (info.secret.name, info.type) == ("a-secret", "Opaque")
    assert info.creation_timestamp.seconds > 0
    assert [s.secret.name for s in c.list_secret()] == ["a-secret"]
    with pytest.raises(grpc.RpcError) as exc:
        c.create_secret("a-secret", {"k": "other"})
    assert 'failed to create secret: secrets "a-secret" already exists' in exc.value.details()
    c.delete_secret("a-secret")
    assert list(c.list_secret()) == []
    for call in (c.inspect_secret, c.delete_secret):
        with pytest.raises(grpc.RpcError) as exc:
            call("a-secret")
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert 'secret: secrets "a-secret" not found' in exc.value.details()


@pytest.mark.parametrize("doc, words", [
    (b"{not json", "failed to unmarshal secret"),
    (b'{"metadata": {"name": "Bad_Name"}}', "lowercase RFC 1123 subdomain"),
    (b'{"metadata": {}}', "name or generateName is required"),
    (b'{"metadata": {"name": "../x"}}', "lowercase RFC 1123 subdomain"),
    (b'{"metadata": {"name": "x"}, "data": {"k": "%%%VALUE"}}', "data[k] is not valid base64"),
    (b'{"metadata": {"name": "x"}, "data": {"a/b": ""}}', "a valid config key"),
    (b'{"metadata": {"name": "x"}, "data": {"..": ""}}', "a valid config key"),
    (b'{"metadata": {"name": "x", "labels": {"suite": "other"}}}', "invalid suite label"),
])  # fmt: skip
def test_invalid_secrets_are_refused_without_quoting_values(
    pach_client: Any, doc: bytes, words: str
) -> None:
    c = pach_client
    with pytest.raises(grpc.RpcError) as exc:
        _raw_create(c, doc)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in exc.value.details()
    assert "%%%VALUE" not in exc.value.details()
    assert list(c.list_secret()) == []


def test_delete_all_removes_secrets(pach_client: Any) -> None:
    c = pach_client
    c.create_secret("one", {"k": "v"})
    c.create_secret("two", {"k": "v"})
    c.delete_all_pipelines()  # the DeleteAll RPC
    assert list(c.list_secret()) == []


def _secret_pipeline(c: Any, name: str, mount: pps_pb2.SecretMount) -> None:
    sh_pipeline(c, name, pfs("in", "/*"), "echo ok > /pfs/out/x", transform={"secrets": [mount]})


def test_missing_secret_refuses_create_pipeline_as_pachyderm(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("in")
    c.create_secret("have", {"k": "v"})
    cases = [
        (pps_pb2.SecretMount(name="nope", env_var="X", key="k"), "missing Kubernetes secret nope"),
        (pps_pb2.SecretMount(name="nope", mount_path="/m"), "missing Kubernetes secret nope"),
        (pps_pb2.SecretMount(name="have", env_var="X", key="no"),
         "Kubernetes secret have missing key no"),
        (pps_pb2.SecretMount(name="have", env_var="X"),
         "secret have has env_var set but is missing key"),
        (pps_pb2.SecretMount(name="have", mount_path="etc/m"), "clean absolute path"),
        (pps_pb2.SecretMount(name="have", mount_path="/pfs/m"), "cannot be /pfs"),
        (pps_pb2.SecretMount(name="have", mount_path="/a/../b"), "clean absolute path"),
    ]  # fmt: skip
    for mount, words in cases:
        with pytest.raises(grpc.RpcError) as exc:
            _secret_pipeline(c, "p", mount)
        assert words in exc.value.details(), mount
    assert list(c.list_pipeline()) == []


def test_missing_secret_fails_the_jobs_with_the_reason(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("in")
    c.create_secret("gone", {"k": "v"})
    c.create_secret("short", {"k": "v"})
    _secret_pipeline(c, "deleted", pps_pb2.SecretMount(name="gone", mount_path="/m"))
    _secret_pipeline(c, "nokey", pps_pb2.SecretMount(name="short", env_var="X", key="k"))
    with c.transaction():  # 2.7 checks secrets only outside a transaction: the job fails
        _secret_pipeline(c, "intxn", pps_pb2.SecretMount(name="never", env_var="X", key="k"))
    c.delete_secret("gone")
    c.delete_secret("short")
    c.create_secret("short", {"other": "v"})  # the key the pipeline names is gone
    put(c, "in", {"a": "1"})
    expected = {"deleted": "missing Kubernetes secret gone",
                "nokey": "Kubernetes secret short missing key k",
                "intxn": "missing Kubernetes secret never"}  # fmt: skip
    for pipeline, reason in expected.items():
        job = last_job(c, pipeline)
        assert state(job) == "JOB_FAILURE", pipeline
        assert reason in job.reason, (pipeline, job.reason)


def test_warm_python_datum_gets_secret_env_and_mount_path_argument(
    pach_client: Any, tmp_path: Path
) -> None:
    """The default runtime forks `python3 script.py` datums from a zygote: the secret must
    reach them too, and a mount path in cmd is rewritten like /pfs."""
    c = pach_client
    value = _value()
    script = tmp_path / "use_secret.py"
    script.write_text(
        "import hashlib, os, sys\n"
        "env = hashlib.sha256(os.environ['PASSWORD'].encode()).hexdigest()\n"
        "with open(sys.argv[1], 'rb') as f:\n"
        "    data = hashlib.sha256(f.read()).hexdigest()\n"
        "with open(sys.argv[2], 'w') as out:\n"
        "    out.write(env + ' ' + data)\n"
    )
    c.create_secret("py", {"password": value})
    c.create_repo("in")
    put(c, "in", {"a": "1", "b": "2"})
    transform = pps_pb2.Transform(
        cmd=["python3", str(script), "/secret/password", "/pfs/out/sums"],
        secrets=[pps_pb2.SecretMount(name="py", key="password", env_var="PASSWORD"),
                 pps_pb2.SecretMount(name="py", mount_path="/secret")],
    )  # fmt: skip
    c.create_pipeline("py", transform=transform, input=pfs("in", "/"))
    job = last_job(c, "py")
    assert state(job) == "JOB_SUCCESS", job.reason
    out = {k.lstrip("/"): v for k, v in read_repo(c, "py").items()}
    assert out["sums"].split() == [_sha(value), _sha(value)]


# Values carry a mark that names and keys never hold: the name and key may be shown, not it.
_VALUE = st.text(min_size=1).map(lambda v: f"\x01value:{v}")
_NAME = st.text(st.characters(blacklist_characters="\x01"), max_size=12)


@pytest.mark.fuzz
@given(value=_VALUE, key=_NAME.filter(bool), name=_NAME)
def test_no_refusal_ever_quotes_a_value(value: str, key: str, name: str) -> None:
    """Whatever is wrong with a secret (its name, a key, base64, the JSON itself), the error
    names the secret and key at most, never the value, plain or encoded."""
    encoded = base64.b64encode(value.encode()).decode()
    docs = [
        {"metadata": {"name": name}, "data": {key: encoded}},
        {"metadata": {"name": "ok"}, "data": {key: value}},  # not base64 (mostly)
        {"metadata": {"name": "ok"}, "stringData": {key: value}, "data": {key: 1}},
        {"metadata": {"name": name}, "stringData": {key: value * 200_000}},  # over 1 MiB
    ]
    raws = [json.dumps(d).encode() for d in docs]
    raws.append(json.dumps(docs[0]).encode()[:-3])  # cut JSON
    for raw in raws:
        try:
            secrets.parse(raw)
        except errors.PachError as exc:
            assert value not in exc.message and encoded not in exc.message


def test_nul_in_an_env_value_fails_without_the_value(tmp_path: Path) -> None:
    value = _value()
    secrets.create(tmp_path, secrets.Secret("n", "Opaque", {"k": f"{value}\0".encode()}))
    mount = pps_pb2.SecretMount(name="n", key="k", env_var="V")
    with pytest.raises(secrets.SecretMissing) as exc:
        secrets.resolve(tmp_path, [mount])
    assert "NUL" in str(exc.value) and value not in str(exc.value)
    assert secrets.resolve(tmp_path, [pps_pb2.SecretMount(name="n", mount_path="/m")]).mounts
