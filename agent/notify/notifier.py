"""What the runner calls: `started(sha)` before a commit is planned, `finished(run, report)`
after every run and its health check. Turns them into events (`agent.notify.events`) and hands
each to every target's dispatcher (`agent.notify.dispatch`) without waiting for any.

Built by `agent.commands.agent` from the flags with `build_notifier`: an Azure DevOps target
when a token is given and the source is an Azure DevOps URL (`agent.notify.azure`), and one
generic sink per `--notify-url` (`agent.notify.sink`). Never raises into the runner.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.errors import UsageError
from agent.notify import azure, sink
from agent.notify.dispatch import Delivery, Dispatcher, RetryPolicy, where
from agent.notify.events import CommitStatuses, Event, RunLike
from agent.plan.health import StatusReport

log = logging.getLogger("pachsync.notify")
Build = Callable[[Event], Delivery]


@dataclass(frozen=True)
class NotifyConfig:
    """What `pachsync agent` was told (flags and credentials)."""

    source: str
    branch: str
    azure_token: str | None = None
    azure_api_url: str = azure.DEFAULT_API_URL
    target_url: str | None = None  # the status's link (e.g. the agent's /status behind ingress)
    notify_urls: tuple[str, ...] = ()
    notify_secret: str | None = None


def azure_builder(config: NotifyConfig, repo: azure.AzureRepo, token: str) -> Build:
    headers = {"Authorization": azure.auth_header(token), "Content-Type": "application/json",
               "Accept": "application/json"}

    def build(event: Event) -> Delivery:
        body = azure.status_body(event.state, event.message, event.context, config.target_url)
        return Delivery((event.commit, event.context),
                        azure.status_url(config.azure_api_url, repo, event.commit),
                        json.dumps(body).encode(), headers)
    return build


def sink_builder(config: NotifyConfig, url: str, source: str) -> Build:
    secret = config.notify_secret.encode() if config.notify_secret else None
    headers = {"Content-Type": "application/json"}

    def build(event: Event) -> Delivery:
        body = sink.event_body(event, source, config.branch, time.time())
        return Delivery((event.commit, event.context), url, body, headers, secret)
    return build


class Notifier:
    """Events of runs, sent to every target in the background."""

    def __init__(self, targets: Sequence[tuple[Dispatcher, Build]],
                 statuses: CommitStatuses | None = None) -> None:
        self.targets = tuple(targets)
        self._statuses = statuses or CommitStatuses()
        self._lock = threading.Lock()

    def started(self, commit: str) -> None:
        self._post(lambda: self._statuses.started(commit))

    def finished(self, run: RunLike | None, report: StatusReport | None) -> None:
        self._post(lambda: self._statuses.finished(run, report))

    def wait_idle(self, timeout: float) -> bool:
        return all(d.wait_idle(timeout) for d, _ in self.targets)

    def stop(self) -> None:
        for dispatcher, _ in self.targets:
            dispatcher.stop()

    def _post(self, events: Callable[[], list[Event]]) -> None:
        try:
            with self._lock:
                for event in events():
                    for dispatcher, build in self.targets:
                        dispatcher.submit(build(event))
        except Exception:  # noqa: BLE001 - a notification must never fail a sync
            log.exception("notification hook crashed")


def build_notifier(config: NotifyConfig, on_failure: Callable[[str, str], None],
                   on_sent: Callable[[str], None] = lambda target: None,
                   policy: RetryPolicy | None = None, public_source: str = "") -> Notifier | None:
    """The Notifier the flags ask for, or None when no target is configured."""
    targets: list[tuple[Dispatcher, Build]] = []

    def dispatcher(name: str) -> Dispatcher:
        return Dispatcher(name, policy=policy, on_failure=on_failure, on_sent=on_sent)

    if config.notify_urls and not config.notify_secret:
        raise UsageError("--notify-url is given but no secret to sign the events with",
                         hint="set PACHSYNC_NOTIFY_SECRET or pass --notify-secret-file FILE")
    if config.azure_token:
        repo = azure.parse_azure_repo(config.source)
        if repo is None:
            raise UsageError(
                f"an Azure DevOps token is set but the source {public_source or 'URL'} is not an "
                "Azure DevOps git URL, so there is no repository to post commit statuses to",
                hint="use the https://dev.azure.com/ORG/PROJECT/_git/REPO URL (or an SSH form "
                     "of it), or unset PACHSYNC_AZURE_TOKEN / --azure-token-file")
        build = azure_builder(config, repo, config.azure_token)
        targets.append((dispatcher("azure-devops"), build))
    for url in config.notify_urls:
        build = sink_builder(config, url, public_source or config.source)
        targets.append((dispatcher(f"sink {where(url)}"), build))
    return Notifier(targets) if targets else None
