"""Azure DevOps commit statuses: the repository a git URL names, and the REST request.

PURE (no I/O): `agent.notify.notifier` builds requests here and `agent.notify.dispatch` sends
them. The repository comes from `agent.source.identity.canonical_repo`, which already turns every
Azure spelling (`https://[ORG@]dev.azure.com/ORG/PROJECT/_git/REPO`, `git@ssh.dev.azure.com:v3/
ORG/PROJECT/REPO`, `ORG@vs-ssh.visualstudio.com:v3/...`, `https://ORG.visualstudio.com/
[DefaultCollection/]PROJECT/_git/REPO`) into `https://dev.azure.com/ORG/PROJECT/_git/REPO`.

"Statuses - Create", api-version 7.1: `POST {base}/{org}/{project}/_apis/git/repositories/
{repo}/commits/{sha}/statuses?api-version=7.1` with `{"state", "description", "targetUrl",
"context": {"name", "genre"}}`; state is one of Azure's GitStatusState values. Auth: a PAT is
sent as basic auth with an empty user name; a Microsoft Entra token (a JWT: `eyJ…` with two dots)
as a bearer token.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from agent.source.identity import canonical_repo
from agent.util.safetext import one_line

API_VERSION = "7.1"
DEFAULT_API_URL = "https://dev.azure.com"
GENRE = "pachsync"
STATES = frozenset({"pending", "succeeded", "failed", "error", "notApplicable", "notSet"})
DESCRIPTION_MAX = 400  # characters shown in the status; longer texts end with "…"
_CANONICAL_RX = re.compile(r"^https://dev\.azure\.com/([^/]+)/([^/]+)/_git/([^/]+)$")
_JWT_RX = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_SHA_RX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class AzureRepo:
    """Organisation, project and repository of an Azure DevOps git repository (URL-encoded)."""

    org: str
    project: str
    repo: str


def parse_azure_repo(source: str) -> AzureRepo | None:
    """The Azure DevOps repository `source` (a git URL) names, or None if it names another host."""
    match = _CANONICAL_RX.match(canonical_repo(source))
    return AzureRepo(*match.groups()) if match else None


def status_url(base: str, repo: AzureRepo, sha: str) -> str:
    """The "Statuses - Create" URL of commit `sha` (a full hex object id)."""
    if not _SHA_RX.match(sha):
        raise ValueError(f"not a full git commit id: {sha!r}")
    return (f"{base.rstrip('/')}/{repo.org}/{repo.project}/_apis/git/repositories/{repo.repo}"
            f"/commits/{sha}/statuses?api-version={API_VERSION}")


def bounded(text: str, limit: int = DESCRIPTION_MAX) -> str:
    """One printable line (no control characters) of at most `limit` characters."""
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def status_body(state: str, description: str, context: str,
                target_url: str | None = None) -> dict[str, Any]:
    """The request body: state, bounded description, context {name, genre}, targetUrl if set."""
    if state not in STATES:
        raise ValueError(f"not an Azure DevOps status state: {state!r}")
    body: dict[str, Any] = {"state": state, "description": bounded(description),
                            "context": {"name": context, "genre": GENRE}}
    if target_url:
        body["targetUrl"] = target_url
    return body


def auth_header(token: str) -> str:
    """`Authorization` for `token`: Bearer for an Entra JWT, else basic with an empty user."""
    if _JWT_RX.match(token):
        return f"Bearer {token}"
    return "Basic " + base64.b64encode(f":{token}".encode()).decode("ascii")
