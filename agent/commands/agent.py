"""`pachsync agent`: the in-cluster loop that keeps Pachyderm equal to a git branch.

Registered by `agent.cli`. Thin: parses flags, reads credentials (files or env only), sets up
logging, builds `agent.sync.SyncOptions` and hands them to `agent.runner` (schedule, webhooks,
HTTP endpoints, backoff). `--once` runs one sync and exits 0 (applied/unchanged), 1 (specs
invalid or head badly signed) or 2 (failed).
"""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands._syncargs import add_pachd_arg, add_reprocess_arg, reprocess_of

if TYPE_CHECKING:  # imported when the command runs, so `pachsync --help` stays fast
    from agent.notify.notifier import Notifier
    from agent.runner import Runner, WebhookAuth
    from agent.runner.credentials import Credentials
    from agent.runner.metrics import AgentMetrics
    from agent.sync import SyncOptions

Verify = Callable[[Path, str], None]
ONCE_NOTIFY_WAIT_S = 30.0  # --once: how long the last statuses may take to go out

EPILOG = """\
credentials (never flags): PACHSYNC_GIT_TOKEN or --git-token-file (sent as an HTTP header to the
source's host only), PACH_PYTHON_AUTH_TOKEN or --pach-token-file, PACHSYNC_WEBHOOK_SECRET or
--webhook-secret-file, PACHSYNC_BASIC_AUTH ("user:password") or --basic-auth-file,
PACHSYNC_AZURE_TOKEN or --azure-token-file, PACHSYNC_NOTIFY_SECRET or --notify-secret-file.

feedback: with an Azure DevOps token and an Azure DevOps source URL, every commit gets the
statuses pachsync/sync and pachsync/health (pending, succeeded, failed); every --notify-url gets
one JSON event per state change, signed like /webhook/generic. Sent in the background with
retries: a slow or failing endpoint never delays a sync (pachsync_notifications_failed).

endpoints: GET /healthz /readyz /status /metrics; POST /webhook/azure-devops (basic auth,
Azure DevOps "code pushed" service hook; a repeated event id triggers nothing) and
/webhook/generic (headers X-Pachsync-Timestamp: <Unix seconds> and X-Pachsync-Signature:
sha256=<hex HMAC-SHA256 of timestamp + "." + body>; refused when the timestamp is more than
5 minutes off, and a replay is refused). Requests: head within 10 s, whole request within 30 s,
body at most 1 MiB with a Content-Length (no chunked bodies).

configuration from env (a flag wins over its variable; empty = unset): PACHSYNC_SOURCE,
PACHSYNC_BRANCH, PACHSYNC_SPECS_PATH, PACHSYNC_INTERVAL, PACHSYNC_PRUNE (true/false),
PACHSYNC_LISTEN, PACHSYNC_LOG_FORMAT; pachd: PACHD_ADDRESS, TLS CA bundle PACHSYNC_CA_FILE.

exit codes with --once: 0 applied or unchanged, 1 specs invalid or signature refused, 2 failed
or partial (pipelines in conflict, and those reading them, skipped; the rest applied).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "agent", help="run the sync loop: poll git, apply changes, serve webhooks and metrics",
        description="Keep a Pachyderm cluster equal to the specs on a git branch: sync on an "
        "interval and on webhook, back off on failures, stall on invalid commits.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", metavar="URL",
                   help="git URL or local path of the GitOps repo (env PACHSYNC_SOURCE; required)")
    p.add_argument("--branch", metavar="B",
                   help="branch to follow (env PACHSYNC_BRANCH; default: main)")
    p.add_argument("--specs-path", metavar="DIR",
                   help="specs folder in the repo (env PACHSYNC_SPECS_PATH; default: specs)")
    add_pachd_arg(p)
    p.add_argument("--interval", type=float, metavar="SECONDS",
                   help="seconds between syncs (env PACHSYNC_INTERVAL; default: 60)")
    p.add_argument("--jitter", type=float, default=0.1, metavar="FRACTION",
                   help="up to this fraction of the interval is added at random (default 0.1)")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="HTTP address (env PACHSYNC_LISTEN; default: 0.0.0.0:8080)")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=None,
                   help="delete managed pipelines gone from git (env PACHSYNC_PRUNE=true|false; "
                        "default: false)")
    p.add_argument("--allow-empty", action="store_true",
                   help="allow an empty desired state to prune everything")
    p.add_argument("--report-only-drift", action="store_true",
                   help="report pipelines changed outside git instead of reverting them")
    p.add_argument("--adopt", action="store_true",
                   help="take over pipelines git names that no source has ever managed (else "
                        "reported and left alone; per spec: annotation pachsync.io/adopt)")
    add_reprocess_arg(p)
    p.add_argument("--verify-signatures", choices=("ssh", "gpg"),
                   help="apply only commits signed by an allowed key")
    p.add_argument("--allowed-signers", type=Path, metavar="FILE", help="ssh allowed-signers file")
    p.add_argument("--gpg-home", type=Path, metavar="DIR",
                   help="GnuPG home holding the allowed public keys")
    p.add_argument("--webhook-secret-file", type=Path, metavar="FILE",
                   help="HMAC secret of /webhook/generic")
    p.add_argument("--basic-auth-file", type=Path, metavar="FILE",
                   help="'user:password' of /webhook/azure-devops")
    p.add_argument("--git-token-file", type=Path, metavar="FILE",
                   help="token for an HTTPS git source")
    p.add_argument("--pach-token-file", type=Path, metavar="FILE", help="Pachyderm auth token")
    p.add_argument("--azure-token-file", type=Path, metavar="FILE",
                   help="Azure DevOps PAT (or Entra token) with Code (status) scope: turns on "
                        "commit statuses")
    p.add_argument("--azure-api-url", metavar="URL", default="https://dev.azure.com",
                   help="Azure DevOps base URL (Azure DevOps Server: https://HOST/COLLECTION)")
    p.add_argument("--status-target-url", metavar="URL",
                   help="link of each commit status (e.g. the agent's /status behind ingress)")
    p.add_argument("--notify-url", action="append", default=[], metavar="URL",
                   help="POST a signed JSON event per state change here (repeatable)")
    p.add_argument("--notify-secret-file", type=Path, metavar="FILE",
                   help="HMAC secret signing the --notify-url events")
    p.add_argument("--log-format", choices=("text", "json"),
                   help="log lines as text or JSON (env PACHSYNC_LOG_FORMAT; default: text)")
    p.add_argument("--once", action="store_true", help="run one sync and exit with its code")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where the git clone is kept (default: a temp dir for this process)")
    p.set_defaults(func=run)


def _verifier(args: argparse.Namespace) -> Verify | None:
    if not args.verify_signatures:
        return None
    from agent.source.verify import SignaturePolicy, make_verifier

    return make_verifier(SignaturePolicy(args.verify_signatures, args.allowed_signers,
                                         args.gpg_home))


# flag dest -> (env var, default). A flag given on the command line wins over its env var,
# so the Kubernetes Deployment configures the agent from a ConfigMap without a shell wrapper.
ENV_DEFAULTS: dict[str, tuple[str, Any]] = {
    "source": ("PACHSYNC_SOURCE", None),
    "branch": ("PACHSYNC_BRANCH", "main"),
    "specs_path": ("PACHSYNC_SPECS_PATH", "specs"),
    "interval": ("PACHSYNC_INTERVAL", 60.0),
    "prune": ("PACHSYNC_PRUNE", False),
    "listen": ("PACHSYNC_LISTEN", "0.0.0.0:8080"),
    "log_format": ("PACHSYNC_LOG_FORMAT", "text"),
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _from_env(dest: str, var: str, raw: str) -> Any:
    from agent.errors import UsageError

    value = raw.strip()
    if dest == "interval":
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"{var}={raw!r} is not a number of seconds",
                             hint=f"set {var} to e.g. 60, or pass --interval") from None
    if dest == "prune":
        if value.lower() not in _TRUE + _FALSE:
            raise UsageError(f"{var}={raw!r} is not true or false",
                             hint=f"set {var} to true or false, or pass --prune/--no-prune")
        return value.lower() in _TRUE
    if dest == "log_format" and value not in ("text", "json"):
        raise UsageError(f"{var}={raw!r} is not text or json", hint=f"set {var} to text or json")
    return value


def apply_env(args: argparse.Namespace, env: Mapping[str, str]) -> argparse.Namespace:
    """Fill every flag left unset from its env var (empty = unset), else its default.

    Returns a new namespace; raises UsageError for a bad value or a missing source."""
    from agent.errors import UsageError

    filled = argparse.Namespace(**vars(args))
    for dest, (var, default) in ENV_DEFAULTS.items():
        if getattr(filled, dest, None) is not None:
            continue
        raw = env.get(var, "")
        setattr(filled, dest, _from_env(dest, var, raw) if raw.strip() else default)
    if not filled.source:
        raise UsageError("no git source to follow",
                         hint="pass --source URL_OR_PATH or set PACHSYNC_SOURCE")
    return filled


def _check(args: argparse.Namespace) -> None:
    from agent.errors import UsageError

    if args.interval <= 0:
        raise UsageError(f"--interval must be > 0 (got {args.interval})")
    if not 0 <= args.jitter <= 1:
        raise UsageError(f"--jitter is a fraction of the interval in [0, 1] (got {args.jitter})")


def run(args: argparse.Namespace) -> int:
    import os

    from agent.runner import logs
    from agent.runner.credentials import load_credentials

    args = apply_env(args, os.environ)
    _check(args)
    creds = load_credentials(args.webhook_secret_file, args.basic_auth_file,
                             args.git_token_file, args.pach_token_file,
                             azure_token_file=args.azure_token_file,
                             notify_secret_file=args.notify_secret_file)
    log = logs.configure(args.log_format, secrets=creds.values(), capture_all=True)
    # agent.source.fetch and agent.cluster.address read the tokens themselves (env or the file
    # named in env): hand over file paths, so no token is copied around by this command.
    if args.git_token_file:
        os.environ["PACHSYNC_GIT_TOKEN_FILE"] = str(args.git_token_file.resolve())
    if args.pach_token_file:
        os.environ["PACHSYNC_AUTH_TOKEN_FILE"] = str(args.pach_token_file.resolve())
    verify = _verifier(args)
    with tempfile.TemporaryDirectory(prefix="pachsync-agent-") as tmp:
        options = _options(args, args.cache_dir or Path(tmp))
        if args.once:
            return _run_once(args, options, verify, creds)
        return _serve(args, options, verify, creds, log)


def _options(args: argparse.Namespace, cache_dir: Path) -> SyncOptions:
    from agent.sync import SyncOptions

    return SyncOptions(
        source=args.source, branch=args.branch, specs_path=args.specs_path, pachd=args.pachd,
        prune=args.prune, allow_empty=args.allow_empty, reprocess=reprocess_of(args),
        self_heal=not args.report_only_drift, adopt=args.adopt, cache_dir=cache_dir)


def _notifier(args: argparse.Namespace, creds: Credentials,
              metrics: AgentMetrics) -> Notifier | None:
    from agent.notify.notifier import NotifyConfig, build_notifier
    from agent.runner.credentials import redact_url

    config = NotifyConfig(
        source=args.source, branch=args.branch, azure_token=creds.azure_token,
        azure_api_url=args.azure_api_url, target_url=args.status_target_url,
        notify_urls=tuple(args.notify_url), notify_secret=creds.notify_secret)
    return build_notifier(
        config, on_failure=lambda target, _why: metrics.notifications_failed.labels(
            target=target).inc(),
        on_sent=lambda target: metrics.notifications_sent.labels(target=target).inc(),
        public_source=redact_url(args.source))


def _runner(args: argparse.Namespace, options: SyncOptions, verify: Verify | None,
            creds: Credentials) -> Runner:
    from agent.runner import BackoffPolicy, Runner, RunnerConfig
    from agent.runner.credentials import redact_url
    from agent.runner.metrics import AgentMetrics
    from agent.sync import sync_once

    config = RunnerConfig(interval_s=args.interval, jitter=args.jitter,
                          backoff=BackoffPolicy(), self_heal=not args.report_only_drift)
    metrics = AgentMetrics(redact_url(options.source), options.branch)
    return Runner(options, sync_once, config=config, verify=verify, secrets=creds.values(),
                  metrics=metrics, notifier=_notifier(args, creds, metrics))


def _run_once(args: argparse.Namespace, options: SyncOptions, verify: Verify | None,
              creds: Credentials) -> int:
    from agent.runner.status import exit_code

    runner = _runner(args, options, verify, creds)
    result = runner.run_once("once")
    if runner.notifier is not None:  # statuses of this one run: sent (bounded wait), then stop
        runner.notifier.wait_idle(ONCE_NOTIFY_WAIT_S)
        runner.notifier.stop()
    return 2 if result is None else exit_code(result)


def _serve(args: argparse.Namespace, options: SyncOptions, verify: Verify | None,
           creds: Credentials, log: logging.Logger) -> int:
    from agent.errors import UsageError
    from agent.runner import AgentServer, WebhookAuth

    runner = _runner(args, options, verify, creds)
    auth = WebhookAuth(hmac_secret=creds.webhook_secret.encode() if creds.webhook_secret else None,
                       basic_auth=creds.basic_auth)
    try:
        server = AgentServer(runner, args.listen, auth).start()
    except OSError as exc:  # port in use, address not on this host, privileged port
        raise UsageError(f"cannot listen on {args.listen}: {exc.strerror or exc}",
                         hint="choose another --listen HOST:PORT (or PACHSYNC_LISTEN); "
                              "port 0 picks a free one") from exc
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before anyone can learn where we listen
        signal.signal(sig, lambda *_: stop.set())
    host, port = server.address
    log.info(f"agent listening on {host}:{port}", extra={"fields": {
        "event": "start", "listen": f"{host}:{port}", "branch": args.branch,
        "interval_s": args.interval, "webhooks": _enabled(auth)}})
    runner.start()
    try:
        # Wake up now and then: a signal that lands on another thread (the HTTP workers, grpc's)
        # only runs its Python handler when the main thread next executes bytecode.
        while not stop.wait(timeout=0.5):
            pass
    finally:
        log.info("agent stopping", extra={"fields": {"event": "stop"}})
        runner.stop(wait=True)
        server.stop()
        if runner.notifier is not None:
            runner.notifier.stop()
    return 0


def _enabled(auth: WebhookAuth) -> list[str]:
    return [name for name, on in (("azure-devops", auth.basic_auth), ("generic", auth.hmac_secret))
            if on]
