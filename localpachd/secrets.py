"""Pipeline secrets: Kubernetes-Secret-shaped JSON in, one private file per secret on disk.

Called by the pps servicer (CreateSecret, InspectSecret, ListSecret, DeleteSecret, and the
CreatePipeline check Pachyderm 2.7 makes) and by `localpachd.jobrun`, which resolves a
pipeline's `transform.secrets` into the env vars and mount files its datums get
(`localpachd.worker`). Secrets live in `<data dir>/secrets/` (mode 0700), one `<name>.json`
(0600) each, created atomically (written to a temporary file, fsynced, then linked into place,
which fails if the name exists), so a crash leaves either the whole secret or none.

Values never appear in an error text, a log line or any response: errors name only the secret,
the key and what is wrong. Texts follow Pachyderm 2.7 (`pps/server/api_server.go`) and the
Kubernetes API server it forwards to.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localpachd import errors

DIR_NAME = "secrets"
MAX_DATA_BYTES = 1 << 20  # Kubernetes: a secret's data may total at most 1 MiB
DEFAULT_TYPE = "Opaque"
_NAME_RX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_KEY_RX = re.compile(r"[-._a-zA-Z0-9]+")
MAX_NAME_LEN = 253


@dataclass(frozen=True)
class Secret:
    name: str
    type: str
    data: Mapping[str, bytes] = field(repr=False)  # never shown in a repr or a traceback
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0


@dataclass(frozen=True)
class Resolved:
    """What a job's datums get: env vars and (mount path, files) pairs, in spec order."""

    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    mounts: tuple[tuple[str, Mapping[str, bytes]], ...] = field(default=(), repr=False)


class SecretMissing(Exception):
    """A pipeline names a secret (or key) that does not exist: its jobs fail with this text."""


def _invalid(name: str, detail: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f'failed to create secret: Secret "{name}" is invalid: {detail}')


def _check_name(name: str) -> None:
    if not name:
        raise _invalid(name, "metadata.name: Required value: name or generateName is required")
    if len(name) > MAX_NAME_LEN or not _NAME_RX.fullmatch(name):
        raise _invalid(name, (
            f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
            "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
            f"with an alphanumeric character (at most {MAX_NAME_LEN} characters)"
        ))  # fmt: skip


def _check_key(name: str, key: str) -> None:
    if not _KEY_RX.fullmatch(key) or key in (".", "..") or key.startswith(".."):
        raise _invalid(name, (
            f'data[{key}]: Invalid value: "{key}": a valid config key must consist of '
            "alphanumeric characters, '-', '_' or '.' (and must not be or start with '..')"
        ))  # fmt: skip


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise errors.InvalidArgument(
            f"failed to unmarshal secret: {what} must map strings to strings"
        )
    return dict(value)


def _data(doc: dict[str, Any]) -> dict[str, bytes]:
    """`data` (base64) merged with `stringData` (plain, wins on a shared key), as Kubernetes."""
    out: dict[str, bytes] = {}
    for key, value in (doc.get("data") or {}).items():
        if not isinstance(value, str):
            raise errors.InvalidArgument(f"failed to unmarshal secret: data[{key}] is not a string")
        try:
            out[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise errors.InvalidArgument(
                f"failed to unmarshal secret: data[{key}] is not valid base64"
            ) from None
    for key, value in _str_map(doc.get("stringData"), "stringData").items():
        out[key] = value.encode()
    return out


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise errors.InvalidArgument("failed to unmarshal secret: metadata must be an object")
    if not isinstance(meta.get("name") or "", str):
        raise errors.InvalidArgument("failed to unmarshal secret: metadata.name must be a string")
    return meta


def parse(file: bytes) -> Secret:
    """The CreateSecretRequest's `file`: a Kubernetes Secret as JSON (what python-pachyderm's
    create_secret and `pachctl create secret` send). InvalidArgument never quotes a value."""
    try:
        doc = json.loads(file)
    except (ValueError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise errors.InvalidArgument(f"failed to unmarshal secret: invalid JSON{where}") from None
    if not isinstance(doc, dict):
        raise errors.InvalidArgument("failed to unmarshal secret: the file must hold a JSON object")
    meta = _metadata(doc)
    name = meta.get("name") or ""
    _check_name(name)
    if not isinstance(doc.get("data") or {}, dict):
        raise errors.InvalidArgument("failed to unmarshal secret: data must be an object")
    data = _data(doc)
    for key in data:
        _check_key(name, key)
    size = sum(len(v) for v in data.values())
    if size > MAX_DATA_BYTES:
        raise _invalid(name, f"data: Too long: must have at most {MAX_DATA_BYTES} bytes")
    labels = _str_map(meta.get("labels"), "metadata.labels")
    suite = labels.get("suite", "")
    if suite not in ("", "pachyderm"):
        raise errors.InvalidArgument(f"invalid suite label set on secret: suite={suite}")
    labels.update(suite="pachyderm", **{"secret-source": "pachyderm-user"})
    kind = doc.get("type") or DEFAULT_TYPE
    if not isinstance(kind, str):
        raise errors.InvalidArgument("failed to unmarshal secret: type must be a string")
    return Secret(
        name, kind, data, labels, _str_map(meta.get("annotations"), "metadata.annotations")
    )


# ------------------------------------------------------------------ storage


def _dir(data_dir: Path) -> Path:
    d = data_dir / DIR_NAME
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)  # also when an older directory had looser rights
    return d


def _path(data_dir: Path, name: str) -> Path:
    if len(name) > MAX_NAME_LEN or not _NAME_RX.fullmatch(name):
        raise KeyError(name)  # no such secret can exist; never a path outside the directory
    return _dir(data_dir) / f"{name}.json"


def _encode(s: Secret) -> bytes:
    doc = {
        "name": s.name, "type": s.type, "labels": dict(s.labels),
        "annotations": dict(s.annotations), "created": s.created,
        "data": {k: base64.b64encode(v).decode() for k, v in s.data.items()},
    }  # fmt: skip
    return json.dumps(doc, sort_keys=True).encode()


def _decode(raw: bytes) -> Secret:
    doc = json.loads(raw)
    data = {k: base64.b64decode(v) for k, v in doc["data"].items()}
    return Secret(doc["name"], doc["type"], data, doc["labels"], doc["annotations"], doc["created"])


def create(data_dir: Path, secret: Secret) -> Secret:
    """Store a new secret (0600, atomic); AlreadyExists if the name is taken."""
    stored = Secret(secret.name, secret.type, secret.data, secret.labels, secret.annotations,
                    time.time())  # fmt: skip
    final = _path(data_dir, secret.name)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_encode(stored))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, final)  # atomic, and refuses an existing name
        except FileExistsError:
            raise errors.AlreadyExists(
                f'failed to create secret: secrets "{secret.name}" already exists'
            ) from None
    finally:
        os.unlink(tmp)
    _fsync_dir(final.parent)
    return stored


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def get(data_dir: Path, name: str) -> Secret | None:
    try:
        raw = _path(data_dir, name).read_bytes()
    except (KeyError, FileNotFoundError):
        return None
    return _decode(raw)


def require(data_dir: Path, name: str, verb: str = "get") -> Secret:
    """The secret, or NotFound in Pachyderm's words: `secrets "x" not found`."""
    s = get(data_dir, name)
    if s is None:
        raise errors.NotFound(f'failed to {verb} secret: secrets "{name}" not found')
    return s


def list_all(data_dir: Path) -> list[Secret]:
    """Every stored secret, by name (as Kubernetes lists them)."""
    names = sorted(p.name[: -len(".json")] for p in _dir(data_dir).glob("*.json"))
    return [s for s in (get(data_dir, n) for n in names) if s is not None]


def delete(data_dir: Path, name: str) -> None:
    """Remove a secret; NotFound (Pachyderm's text) if there is none."""
    try:
        _path(data_dir, name).unlink()
    except (KeyError, FileNotFoundError):
        raise errors.NotFound(f'failed to delete secret: secrets "{name}" not found') from None
    _fsync_dir(_dir(data_dir))


def delete_all(data_dir: Path) -> None:
    """DeleteAll removes every user secret, as Pachyderm 2.7 does."""
    for s in list_all(data_dir):
        try:
            delete(data_dir, s.name)
        except errors.NotFound:
            pass  # deleted concurrently


# ------------------------------------------------------------------ use by pipelines


def check_pipeline(data_dir: Path, mounts: Iterable[Any]) -> None:
    """Pachyderm 2.7's CreatePipeline check of `transform.secrets` (SecretMount messages):
    raises SecretMissing with its text."""
    resolve(data_dir, mounts)


def resolve(data_dir: Path, mounts: Iterable[Any]) -> Resolved:
    """The env vars and mount files of `transform.secrets`; SecretMissing (2.7's texts) if a
    secret or an env var's key does not exist, or a value cannot be an environment variable."""
    env: dict[str, str] = {}
    files: list[tuple[str, Mapping[str, bytes]]] = []
    for m in mounts:
        if m.env_var and not m.key:
            raise SecretMissing(f"secret {m.name} has env_var set but is missing key")
        s = get(data_dir, m.name)
        if s is None:
            raise SecretMissing(f"missing Kubernetes secret {m.name}")
        if m.mount_path:
            files.append((m.mount_path, dict(s.data)))
        if not m.env_var:
            continue
        if m.key not in s.data:
            raise SecretMissing(f"Kubernetes secret {m.name} missing key {m.key}")
        value = s.data[m.key]
        if b"\0" in value:
            raise SecretMissing(
                f"Kubernetes secret {m.name} key {m.key} holds a NUL byte, which environment "
                f"variable {m.env_var} cannot: mount it as a file (mount_path) instead"
            )
        env[m.env_var] = value.decode("utf-8", "surrogateescape")
    return Resolved(env, tuple(files))
