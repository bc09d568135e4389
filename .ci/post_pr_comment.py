#!/usr/bin/env python3
"""Post (or update) the `pachsync plan` markdown as one comment thread on an Azure DevOps PR.

Called by azure-pipelines.yml: job Plan after `pachsync plan --format markdown`, job
PreviewComment with `pachsync preview`'s preview.md (`--marker pachsync-preview`). Standard
library only. It uses the pipeline's own identity (SYSTEM_ACCESSTOKEN = $(System.AccessToken))
and the predefined variables Azure Pipelines exports to every step:
SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECT, BUILD_REPOSITORY_ID,
SYSTEM_PULLREQUEST_PULLREQUESTID. The comment carries a hidden marker, so the next push to the
PR edits the same comment instead of adding a new one (as Atlantis and Terraform Cloud do);
`--marker NAME` keeps one comment per kind (plan, preview).
REST API: Pull Request Threads (api-version 7.1). The build service needs the
"Contribute to pull requests" permission on the repository. What it prints from the server
(an error body) is shown as one escaped line: it must not become an Azure logging command.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

MARKER = "<!-- pachsync-plan -->"  # the default --marker
MARKER_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
API_VERSION = "7.1"
MAX_CHARS = 150_000  # Azure DevOps refuses comments above ~150k characters
REQUIRED = ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_REPOSITORY_ID",
            "SYSTEM_PULLREQUEST_PULLREQUESTID", "SYSTEM_ACCESSTOKEN")


class ApiError(Exception):
    pass


def shown(text: str) -> str:
    """`text` as one printable log line without `##` (so never `##vso[` nor `##[`)."""
    line = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)
    return line.replace("##", "#\\x23")


def threads_url(env: Mapping[str, str]) -> str:
    base = env["SYSTEM_COLLECTIONURI"].rstrip("/")
    project = urllib.parse.quote(env["SYSTEM_TEAMPROJECT"], safe="")
    repo = urllib.parse.quote(env["BUILD_REPOSITORY_ID"], safe="")
    pr = int(env["SYSTEM_PULLREQUEST_PULLREQUESTID"])
    return f"{base}/{project}/_apis/git/repositories/{repo}/pullRequests/{pr}/threads"


def request(method: str, url: str, token: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    auth = base64.b64encode(f":{token}".encode()).decode()
    req = urllib.request.Request(
        f"{url}?api-version={API_VERSION}", data=data, method=method,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json",
                 "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ApiError(f"{method} {url} -> HTTP {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise ApiError(f"{method} {url} -> {exc.reason}") from exc


def marker_for(name: str) -> str:
    return f"<!-- {name} -->"


def comment_body(markdown: str, marker: str = MARKER) -> str:
    if len(markdown) > MAX_CHARS:
        note = "\n\n… (truncated; the full text is in the build's artifacts)"
        markdown = markdown[:MAX_CHARS] + note
    return f"{marker}\n{markdown}"


def find_existing(threads: Any, marker: str = MARKER) -> tuple[int, int] | None:
    """(thread id, comment id) of our earlier comment, if any."""
    for thread in (threads or {}).get("value", []):
        for comment in thread.get("comments", []):
            if marker in (comment.get("content") or "") and not comment.get("isDeleted"):
                return int(thread["id"]), int(comment["id"])
    return None


def post(markdown: str, env: Mapping[str, str], marker: str = MARKER) -> str:
    """Create or update the comment carrying `marker`. Returns 'created' or 'updated'."""
    url, token = threads_url(env), env["SYSTEM_ACCESSTOKEN"]
    content = comment_body(markdown, marker)
    existing = find_existing(request("GET", url, token), marker)
    if existing is not None:
        thread_id, comment_id = existing
        request("PATCH", f"{url}/{thread_id}/comments/{comment_id}", token, {"content": content})
        return "updated"
    body = {"comments": [{"parentCommentId": 0, "content": content, "commentType": 1}],
            "status": 1}
    request("POST", url, token, body)
    return "created"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, help="markdown file (pachsync plan output)")
    parser.add_argument("--marker", default="pachsync-plan",
                        help="hidden marker naming the comment to update (default: pachsync-plan)")
    args = parser.parse_args(argv)
    if not MARKER_NAME.fullmatch(args.marker):
        parser.error("--marker: lowercase letters, digits and dashes, e.g. pachsync-preview")
    env = os.environ if env is None else env
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        print(f"post_pr_comment: missing environment variables: {', '.join(missing)} "
              "(run inside a PR build; map SYSTEM_ACCESSTOKEN: $(System.AccessToken))",
              file=sys.stderr)
        return 2
    try:
        with open(args.file, encoding="utf-8") as handle:
            markdown = handle.read()
        print(f"post_pr_comment: {post(markdown, env, marker_for(args.marker))} the "
              f"{args.marker} comment on PR "
              f"{env['SYSTEM_PULLREQUEST_PULLREQUESTID']}")
    except (OSError, ApiError) as exc:
        print(f"post_pr_comment: {shown(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
