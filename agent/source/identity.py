"""PURE source identity: one canonical name per git repository, whatever URL spells it.

Called by `agent.sync` (deriving the `pachsync.io/managed-by` value the agent writes) and by the
planner (`agent.plan.diff`, comparing that value with the one a live pipeline carries). String
work only: no file system, no network, no git. A caller that wants symlinks resolved or `~`
expanded does it before calling.

A source id is `<repository>#<branch>:<specs path>` (or `local:<dir>` for `--specs DIR`, or any
free-form `--source-id`). The repository part is canonicalised so every spelling of one
repository gives one string:

- a local path, relative (against `cwd`) or absolute, or a `file://` URL -> `file:///abs/path`
  (normalised, no trailing slash, a trailing `/.git` dropped: the work tree and its git dir are
  one repository; a `.git` suffix of a bare repository is kept, since `x` and `x.git` may both
  exist);
- `https://`, `http://`, `ssh://`, `git://`, `git+ssh://` URLs and scp-like `user@host:path` ->
  `https://host/path`, an identity rather than how to fetch: no credentials, lower-case host, no
  default port, no trailing slash or `.git`, no repeated slashes. An explicit non-default port
  keeps its scheme (`ssh://host:2222/path`): another port may be another server, and an
  ownership check must rather see a conflict than let two agents share pipelines;
- paths are percent-encoded one way (`/srv/my repo` -> `/srv/my%20repo`), so canonicalising a
  canonical name changes nothing and a `#` in a path never splits a source id;
- Azure DevOps' SSH form (`git@ssh.dev.azure.com:v3/org/project/repo`) and its older
  `org.visualstudio.com` hosts name the same repository as
  `https://dev.azure.com/org/project/_git/repo`; hosts whose paths are case-insensitive
  (dev.azure.com, github.com) are lower-cased whole.

Identities written by older versions (a resolved absolute path, a URL as given minus
credentials) canonicalise to the same string, so `same_source` recognises them and clusters
applied before never flip to "owned by another source".
"""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

LOCAL_PREFIX = "local:"
_NETWORK_SCHEMES = frozenset({"http", "https", "ssh", "git", "git+ssh", "ssh+git"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418, "git+ssh": 22, "ssh+git": 22}
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
# `[user@]host:path` as git reads it: a colon before any slash, and not `C:` or `./x:y`.
_SCP_RX = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^/:@]{2,}|\[[^\]]+\]):(?P<path>.*)$")
_CASELESS_HOSTS = frozenset({"dev.azure.com", "github.com"})
_AZURE_SSH_HOSTS = frozenset({"ssh.dev.azure.com", "vs-ssh.visualstudio.com"})
_VISUALSTUDIO_RX = re.compile(r"^(?P<org>[^.]+)\.visualstudio\.com$")
_SAFE = "/@+:,=~!$&'()*;"


def canonical_repo(source: str, cwd: str = "/") -> str:
    """The canonical name of the repository `source` points at (see the module docstring)."""
    text = source.strip()
    if "://" in text:
        return _canonical_url(text, cwd)
    scp = _SCP_RX.match(text)
    if scp and not text.startswith(("/", ".", "~")):
        return _network("ssh", scp.group("host"), None, "/" + scp.group("path"))
    return _local(text, cwd)


def _canonical_url(text: str, cwd: str) -> str:
    url = urlsplit(text)
    scheme = url.scheme.lower()
    host = (url.hostname or "").lower()
    if scheme == "file":
        if host not in ("", "localhost"):  # file://server/share: keep the server
            return f"file://{host}{_path(posixpath.normpath('/' + unquote(url.path).lstrip('/')))}"
        return _local(unquote(url.path) or "/", cwd)
    try:
        port = url.port
    except ValueError:  # a port that is not a number: keep it out of the identity
        port = None
    if scheme not in _NETWORK_SCHEMES:  # unknown scheme: only credentials and slashes go
        netloc = _netloc(host, port)
        return f"{scheme}://{netloc}{_path(unquote(url.path).rstrip('/'))}"
    return _network(scheme, host, port, unquote(url.path))


def _path(path: str) -> str:
    """Percent-encoded the one way (so canonicalising twice changes nothing)."""
    return quote(path, safe=_SAFE)


def _netloc(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host


def _local(path: str, cwd: str) -> str:
    joined = path if path.startswith("/") else posixpath.join(cwd or "/", path)
    norm = "/" + posixpath.normpath(joined).lstrip("/")  # Linux reads `//x` as `/x`
    if norm.endswith("/.git") and norm != "/.git":
        norm = norm[: -len("/.git")]
    return "file://" + _path(norm)


def _network(scheme: str, host: str, port: int | None, path: str) -> str:
    host = host.strip("[]").lower().rstrip(".")
    scheme = "ssh" if scheme in _SSH_SCHEMES else scheme
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if parts and parts[-1].endswith(".git"):
        parts[-1] = parts[-1][: -len(".git")]
    host, parts = _azure(host, [p for p in parts if p])
    explicit = port is not None and port != _DEFAULT_PORTS.get(scheme)
    netloc = _netloc(host, port if explicit else None)
    out = f"{scheme if explicit else 'https'}://{netloc}" + _path("/" + "/".join(parts))
    out = out.rstrip("/") if parts else out
    return out.lower() if host in _CASELESS_HOSTS else out


def _azure(host: str, parts: list[str]) -> tuple[str, list[str]]:
    """Azure DevOps' other spellings of `dev.azure.com/<org>/<project>/_git/<repo>`."""
    if host in _AZURE_SSH_HOSTS and len(parts) == 4 and parts[0] == "v3":
        return "dev.azure.com", [parts[1], parts[2], "_git", parts[3]]
    old = _VISUALSTUDIO_RX.match(host)
    if old and old.group("org") != "vs-ssh":
        rest = [p for p in parts if p.lower() != "defaultcollection"]
        return "dev.azure.com", [old.group("org"), *rest]
    return host, parts


def local_path(source: str) -> str | None:
    """The file-system path a local source names (a path, or a `file://` URL of this host, as
    written: not made absolute), or None for a network source."""
    text = source.strip()
    if "://" in text:
        url = urlsplit(text)
        local = url.scheme.lower() == "file" and (url.hostname or "") in ("", "localhost")
        return unquote(url.path) or "/" if local else None
    if _SCP_RX.match(text) and not text.startswith(("/", ".", "~")):
        return None
    return text


@lru_cache(maxsize=1024)
def canonical_source_id(source_id: str, cwd: str = "/") -> str:
    """`<repo>#<branch>:<path>` with the repository canonicalised and the path stripped of
    slashes (`.` for the root); `local:<dir>` with the dir normalised; anything else (a
    free-form `--source-id`) stripped of surrounding blanks only."""
    text = source_id.strip()
    if text.startswith(LOCAL_PREFIX):
        return LOCAL_PREFIX + _local(text[len(LOCAL_PREFIX):], cwd)[len("file://"):]
    repo, sep, rest = text.rpartition("#")
    if not sep or ":" not in rest or not repo:
        return text
    branch, _, path = rest.partition(":")
    return make_source_id(canonical_repo(repo, cwd), branch, path)


def make_source_id(repo: str, branch: str, specs_path: str) -> str:
    """The id of a specs folder on a branch of a (canonical) repository."""
    path = posixpath.normpath(specs_path.strip("/") or ".")
    return f"{repo}#{branch}:{path.strip('/') or '.'}"


def same_source(a: str, b: str) -> bool:
    """Whether two source ids (any spelling, old or new) name one source."""
    return a == b or canonical_source_id(a) == canonical_source_id(b)
