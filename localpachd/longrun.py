"""The supervisor of spout and service pipelines' processes, and what those processes get.

Started by `localpachd.pps.register` (`Supervisor.for_server`) and closed by a server stop hook
(its thread joined and every process ended before the store closes). One thread reconciles, on
every store change and at least every `MAX_WAIT` seconds:
- spouts: Pachyderm 2.7 runs a spout's `transform.cmd` once, as a long-lived process that writes
  to its output repo through the API (src/server/worker/pipeline/spout/spout.go), restarted when
  it fails. A new, started or updated spout gets its process (`spout_programs`); a stopped,
  updated or deleted one loses it; a process that exits is started again after a backoff that
  doubles with every quick exit (`backoff`, pure);
- services run through jobs (`localpachd.servicejob.Services`, one pass per reconcile).
What a spout's process gets is what a 2.7 spout container gets (worker_rc.go, workerPodSpec and
createWorkerPachctlSecret): the server's environment, `transform.env`, `transform.secrets` (env
vars, and files at each `mount_path`), PPS_PIPELINE_NAME/PPS_PROJECT_NAME, the PACHD_* address
Kubernetes gives every pod (`Reach.env`), and a pachctl config at /pachctl/config.json holding the
server's address, its auth token and, with TLS, its certificate (`Reach.pachctl_config`; also
named by PACH_CONFIG, since /pachctl exists only in namespace mode).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from localpachd import errors, logs, runtime_longrun, secrets
from localpachd.jobrun import pipeline_context
from localpachd.pps import db
from localpachd.runtime_longrun import Process
from localpachd.safepath import safe_join
from localpachd.servicejob import Services
from localpachd.store import Store, Tx
from localpachd.worker import (
    JobContext,
    build_argv,
    build_stdin,
    python_bin_dir,
    rewrite_pfs,
    secret_dirs,
)
from localpachd.worker import secret_files as write_secret_files

if TYPE_CHECKING:
    from localpachd.context import ServerConfig, ServerContext

log = logging.getLogger("localpachd.longrun")

MAX_WAIT = 0.5  # seconds between passes at most (an exit is noticed within this)
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_RUN = 60.0  # a process that ran this long resets the backoff
PACHCTL = "/pachctl"  # where 2.7 mounts a spout's pachctl config secret

Key = tuple[str, str, int]  # project, pipeline, version


@dataclass(frozen=True)
class Program:
    """What one pipeline's process runs. Only the fields compared make a new process: a new
    env, secret value or token is used at the next (re)start."""

    argv: tuple[str, ...]
    stdin: bytes | None
    env: dict[str, str] = field(compare=False, repr=False)
    cwd: Path
    log_path: Path
    binds: tuple[tuple[str, str], ...] = ()  # mounted in namespace mode (runtime_longrun)
    # written at each start (read then, not at every pass): path -> its bytes
    files: tuple[tuple[Path, Callable[[], bytes]], ...] = field(default=(), compare=False,
                                                                repr=False)  # fmt: skip
    secrets: JobContext | None = field(default=None, compare=False, repr=False)
    problem: str = field(default="", compare=False)  # why it cannot start (logged, retried)


Programs = Callable[[Tx], dict[Key, Program]]


@dataclass(frozen=True)
class Reach:
    """How a pipeline's process reaches this server, as a worker pod reaches pachd."""

    host: str
    port: int
    token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None

    @classmethod
    def of(cls, config: ServerConfig) -> Reach:
        return cls(config.host, config.port, config.auth_token, config.tls_cert)

    @property
    def reach_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::", "[::]") else self.host

    def env(self) -> dict[str, str]:
        """The PACHD_* variables Kubernetes sets in every pod of pachd's namespace, which
        python-pachyderm's `Client.new_in_cluster()` reads."""
        host, port = self.reach_host, str(self.port)
        return {"PACHD_PEER_SERVICE_HOST": host, "PACHD_PEER_SERVICE_PORT": port,
                "PACHD_SERVICE_HOST": host, "PACHD_SERVICE_PORT": port}  # fmt: skip

    def pachctl_config(self) -> bytes:
        """2.7's createWorkerPachctlSecret: a pachctl config whose active context holds the
        address (here this server's; grpcs:// and its certificate with TLS) and the token."""
        scheme = "grpcs" if self.tls_cert is not None else "grpc"
        context: dict[str, str] = {"pachd_address": f"{scheme}://{self.reach_host}:{self.port}"}
        if self.token is not None:
            context["session_token"] = self.token
        if self.tls_cert is not None:
            context["server_cas"] = base64.b64encode(self.tls_cert.read_bytes()).decode()
        doc = {"v2": {"active_context": "localpachd", "contexts": {"localpachd": context}}}
        return json.dumps(doc, indent=2).encode()


def backoff(quick_exits: int) -> float:
    """Seconds before the next start after `quick_exits` exits in a row that came too soon."""
    if quick_exits <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (quick_exits - 1)))


@dataclass
class _Slot:
    program: Program
    proc: Process | None = None
    started: float = 0.0
    quick_exits: int = 0
    next_start: float = 0.0
    starts: int = 0
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class Supervisor:
    """Runs, restarts and stops the processes `programs(tx)` asks for, and the services."""

    def __init__(self, store: Store, programs: Programs, services: Services | None = None
                 ) -> None:  # fmt: skip
        self.store = store
        self.programs = programs
        self.services = services
        self._slots: dict[Key, _Slot] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="localpachd-longrun", daemon=True)

    @classmethod
    def for_server(cls, ctx: ServerContext) -> Supervisor:
        """The spouts' programs and the services of the server of `ctx` (its config is read
        at every pass: the port is known only once it is bound)."""
        root = ctx.config.data_dir / "longrun"
        services = Services(ctx.store, lambda: {**os.environ, **Reach.of(ctx.config).env()},
                            ctx.config.auth_token)  # fmt: skip
        return cls(ctx.store, spout_programs(root, lambda: Reach.of(ctx.config)), services)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("long-running process supervisor still running %.0f s after stop",
                            timeout)  # fmt: skip
        for key in list(self._slots):
            self._end(key)
        if self.services is not None:
            self.services.close()

    def starts(self, key: Key) -> int:
        """How many times the process of `key` was started (0: not supervised)."""
        slot = self._slots.get(key)
        return slot.starts if slot else 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            seen = self.store.events.version
            wait = MAX_WAIT
            try:
                wait = self._pass(time.monotonic())
                if self.services is not None and not self._stop.is_set():
                    self.services.tend()
            except errors.PachError:
                if self._stop.is_set():
                    return
                log.exception("long-running process pass failed")
            except Exception:  # the supervisor must survive one bad pipeline
                log.exception("long-running process pass failed")
            self.store.events.wait_change(seen, max(0.01, min(wait, MAX_WAIT)))

    def _pass(self, now: float) -> float:
        """Start, restart and stop processes; seconds until the next start is due."""
        with self.store.read() as tx:
            wanted = self.programs(tx)
        for key in [k for k, s in self._slots.items() if wanted.get(k) != s.program]:
            self._end(key)
        soonest = MAX_WAIT
        for key, program in wanted.items():
            if self._stop.is_set():
                break
            slot = self._slots.setdefault(key, _Slot(program))
            slot.program = program  # equal, but with today's env, secrets and token
            soonest = min(soonest, self._tend(key, slot, now))
        return soonest

    def _tend(self, key: Key, slot: _Slot, now: float) -> float:
        if slot.proc is not None:
            code = slot.proc.poll()
            if code is None:
                return MAX_WAIT
            ran = now - slot.started
            slot.quick_exits = 0 if ran >= HEALTHY_RUN else slot.quick_exits + 1
            slot.next_start = now + backoff(slot.quick_exits)
            slot.proc = None
            slot.stack.close()
            log.info("pipeline %s/%s exited with %s; restart in %.1f s", key[0], key[1], code,
                     slot.next_start - now)  # fmt: skip
        if now < slot.next_start:
            return slot.next_start - now
        slot.proc = _launch(slot.program, slot.stack)
        slot.started, slot.starts = now, slot.starts + 1
        if slot.proc is None:  # cannot start: retried with the same backoff as an exit
            slot.quick_exits += 1
            slot.next_start = now + backoff(slot.quick_exits)
        return MAX_WAIT

    def _end(self, key: Key) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None and slot.proc is not None:
            runtime_longrun.stop(slot.proc)
        if slot is not None:
            slot.stack.close()


def _launch(p: Program, stack: contextlib.ExitStack) -> Process | None:
    """Write the program's files (0600 in 0700 folders) and secret files, then start it; None
    (the reason in its log) if it cannot start. `stack` removes the secret files again."""
    p.log_path.parent.mkdir(parents=True, exist_ok=True)
    if p.problem:
        logs.append(p.log_path, f"localpachd: cannot start the process: {p.problem}")
        return None
    try:
        for path, data in p.files:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            _write_private(path, data())
        if p.secrets is not None:
            stack.enter_context(write_secret_files(p.secrets, p.log_path.parent / "pfs"))
    except OSError as exc:
        stack.close()
        logs.append(p.log_path, f"localpachd: cannot prepare the process's files: {exc}")
        return None
    proc = runtime_longrun.spawn(p.argv, p.stdin, p.env, p.cwd, p.log_path, p.binds)
    if proc is None:
        stack.close()
    return proc


def _write_private(path: Path, data: bytes) -> None:
    """`path` holds `data`, mode 0600, replaced atomically (a reader never sees half)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def spout_programs(root: Path, reach: Callable[[], Reach]) -> Programs:
    """The process each running spout wants (services run through `Services`)."""

    def programs(tx: Tx) -> dict[Key, Program]:
        here = reach()
        spouts = [p for p in db.all_current(tx) if not p.stopped and p.spec.HasField("spout")]
        return {(p.project, p.name, p.version): spout_program(root, here, p) for p in spouts}

    return programs


def spout_program(root: Path, reach: Reach, p: db.PipelineRow) -> Program:
    """A spout's process, given what a 2.7 spout container gets (see the module docstring).
    Its secret folders and pachctl config live beside its log in `<root>/<project>/<name>`."""
    home = safe_join(root, p.project, p.name)
    t = p.spec.transform
    ctx, problem = pipeline_context(p.project, p.name, p.spec), ""
    try:
        got = secrets.resolve(root.parent, t.secrets)
        ctx = replace(ctx, secret_env=got.env, secret_mounts=got.mounts)
    except secrets.SecretMissing as exc:
        problem = str(exc)  # 2.7: the pod cannot start (CreateContainerConfigError)
    mounts = secret_dirs(ctx, home / "pfs")  # the spout has no /pfs: only mount paths rewrite
    config = home / "pachctl" / "config.json"
    env = pipeline_env(p.project, p.name, reach, {k: rewrite_pfs(v, Path("/pfs"), mounts)
                                                  for k, v in t.env.items()})  # fmt: skip
    env.update(ctx.secret_env)
    env["PACH_CONFIG"] = str(config)
    if reach.token is not None:  # python-pachyderm's Client() reads it when given no token
        env["PACH_PYTHON_AUTH_TOKEN"] = reach.token
    try:
        argv = build_argv(t.cmd, Path("/pfs"), mounts)
    except ValueError as exc:
        argv, problem = (), problem or str(exc)
    stdin = build_stdin(t.stdin, Path("/pfs"), mounts)
    binds = ((str(config.parent), PACHCTL), *((str(mounts[m]), m) for m, _ in ctx.secret_mounts))
    return Program(argv, stdin, env, safe_join(home, "work"), safe_join(home, "process.log"),
                   binds, ((config, reach.pachctl_config),), ctx, problem)  # fmt: skip


def pipeline_env(project: str, name: str, reach: Reach, spec_env: dict[str, str]
                 ) -> dict[str, str]:  # fmt: skip
    """A spout's environment: the server's, with localpachd's interpreter first on PATH, the
    PACHD_* address, transform.env and the pipeline's names."""
    env = dict(os.environ)
    env["PATH"] = python_bin_dir() + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.update(reach.env())
    env.update(spec_env)
    env.update(PPS_PIPELINE_NAME=name, PPS_PROJECT_NAME=project)
    return env
