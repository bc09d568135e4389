"""Credentials of the agent: read only from environment variables or files, never from flags.

Called by `agent.commands.agent` at start-up. A secret given on the command line would show in
`ps`, shell history and pod specs, so flags only name *files* (mounted Kubernetes secrets);
environment variables are the other accepted channel. Every secret read is also handed to the
log redactor (`agent.runner.logs`) so it can never appear in a log line, even inside an error
text from a lower layer.

Environment variables: PACHSYNC_WEBHOOK_SECRET, PACHSYNC_BASIC_AUTH ("user:password"),
PACHSYNC_GIT_TOKEN, PACH_PYTHON_AUTH_TOKEN (Pachyderm), PACHSYNC_AZURE_TOKEN (Azure DevOps commit
statuses, `agent.notify`), PACHSYNC_NOTIFY_SECRET (signs the events sent to --notify-url). The
git and Pachyderm tokens are used by `agent.source.fetch` and `agent.cluster.address`; the runner
loads them only to redact them.

A secret that is given but empty or blank (a file holding only a newline, `VAR=`) is a
UsageError naming where it came from, never "not configured": for the webhook secret that
would silently mean "no signature check". Unset means unused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from agent.errors import UsageError
from agent.runner.webhook import BasicAuth

ENV_WEBHOOK_SECRET = "PACHSYNC_WEBHOOK_SECRET"
ENV_BASIC_AUTH = "PACHSYNC_BASIC_AUTH"
ENV_GIT_TOKEN = "PACHSYNC_GIT_TOKEN"
ENV_PACH_TOKEN = "PACH_PYTHON_AUTH_TOKEN"
ENV_AZURE_TOKEN = "PACHSYNC_AZURE_TOKEN"
ENV_NOTIFY_SECRET = "PACHSYNC_NOTIFY_SECRET"


def read_secret_file(path: Path, what: str) -> str:
    """The content of a secret file without its trailing newline; UsageError if unusable."""
    try:
        value = path.read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise UsageError(
            f"cannot read {what} file {path}: {exc.strerror or exc}",
            hint="mount the secret as a file and pass its path, or use the environment variable",
        ) from exc
    if not value.strip():
        raise UsageError(f"{what} file {path} is empty",
                         hint="write the secret into the file, or do not pass the file")
    return value


def load_secret(path: Path | None, env_var: str, what: str,
                env: Mapping[str, str] | None = None) -> str | None:
    """A secret from `path` if given, else from `env_var`, else None (both unset)."""
    if path is not None:
        return read_secret_file(path, what)
    value = (os.environ if env is None else env).get(env_var)
    if value is not None and not value.strip():
        raise UsageError(f"{what}: environment variable {env_var} is set but empty",
                         hint=f"put the secret in it, or unset it to run without a {what}")
    return value


def parse_basic_auth_secret(text: str, origin: str) -> BasicAuth:
    """`user:password` (first line of a file or an env value) as BasicAuth."""
    user, sep, password = text.splitlines()[0].partition(":") if text else ("", "", "")
    if not sep or not user or not password:
        raise UsageError(
            f"basic-auth credentials from {origin} must have the form user:password",
            hint="write one line 'user:password' (the Azure DevOps service hook's credentials)",
        )
    return BasicAuth(username=user, password=password)


@dataclass(frozen=True)
class Credentials:
    """Every secret the agent uses; `values()` feeds the log redactor."""

    webhook_secret: str | None = field(default=None, repr=False)
    basic_auth: BasicAuth | None = field(default=None, repr=False)
    git_token: str | None = field(default=None, repr=False)
    pach_token: str | None = field(default=None, repr=False)
    azure_token: str | None = field(default=None, repr=False)
    notify_secret: str | None = field(default=None, repr=False)

    def values(self) -> tuple[str, ...]:
        found = [self.webhook_secret, self.git_token, self.pach_token, self.azure_token,
                 self.notify_secret]
        if self.basic_auth is not None:
            found.append(self.basic_auth.password)
        return tuple(v for v in found if v)


def load_credentials(webhook_secret_file: Path | None = None,
                     basic_auth_file: Path | None = None,
                     git_token_file: Path | None = None,
                     pach_token_file: Path | None = None,
                     env: Mapping[str, str] | None = None, *,
                     azure_token_file: Path | None = None,
                     notify_secret_file: Path | None = None) -> Credentials:
    """Read every credential from its file or environment variable."""
    env = os.environ if env is None else env
    basic_text = load_secret(basic_auth_file, ENV_BASIC_AUTH, "basic-auth", env)
    origin = str(basic_auth_file) if basic_auth_file else ENV_BASIC_AUTH
    return Credentials(
        webhook_secret=load_secret(webhook_secret_file, ENV_WEBHOOK_SECRET, "webhook secret", env),
        basic_auth=parse_basic_auth_secret(basic_text, origin) if basic_text else None,
        git_token=load_secret(git_token_file, ENV_GIT_TOKEN, "git token", env),
        pach_token=load_secret(pach_token_file, ENV_PACH_TOKEN, "Pachyderm token", env),
        azure_token=load_secret(azure_token_file, ENV_AZURE_TOKEN, "Azure DevOps token", env),
        notify_secret=load_secret(notify_secret_file, ENV_NOTIFY_SECRET, "notify secret", env),
    )


def redact_url(url: str) -> str:
    """The URL with any `user:password@` part replaced, fit for logs and /status."""
    parts = urlsplit(url)
    if not parts.scheme or parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = "***@" + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
