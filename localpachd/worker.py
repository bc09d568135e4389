"""The worker: runs one datum of a job, as a Pachyderm worker container would.

Called by `localpachd.jobs` from its datum threads. For each datum it lays out a scratch directory
`<scratch>/pfs/<input name>/<repo path>` plus `<scratch>/pfs/out`, builds the environment
(`<input>`, `<input>_COMMIT`, `PACH_JOB_ID`, `PACH_DATUM_ID`, `PACH_OUTPUT_COMMIT_ID`,
`PPS_PIPELINE_NAME`, `PPS_PROJECT_NAME`, `transform.env`), rewrites `/pfs` in cmd, stdin and env
values to the scratch `pfs` directory (a real `/pfs` cannot exist on every machine; where the
kernel allows, the subprocess runtime also mounts it at a private `/pfs`: `DatumRun.binds`),
replaces `python3`/`python` by the interpreter localpachd runs under, and hands a `DatumRun` to the
`Runtime`. Attempts are retried up to `datum_tries`, with `err_cmd` after each failed one, as
Pachyderm 2.7's `Datum.run` (`failed_attempt`: the rule of `localpachd.attempts`, which the
batching path follows too); outputs are collected (`localpachd.outputs`: bounded, links never
followed out of the datum's /pfs) only from a successful attempt, so a failed or killed attempt
never leaks half-written files; output that cannot be stored fails the attempt.
Every path built from a name goes through `localpachd.safepath.safe_join`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from localpachd import logs
from localpachd.attempts import Tally, Verdict, after_failure, err_cmd_time
from localpachd.datums import Datum, RepoFile
from localpachd.outputs import DEFAULT_LIMITS, Ingest, Limits, OutputError, OutputFile, collect
from localpachd.runtime import DatumOutcome, DatumRun, Runtime
from localpachd.safepath import UnsafePath, safe_join

_PFS_RX = re.compile(r"(?<![\w./-])/pfs(?=/|$|[^\w.-])")
_PYTHON_RX = re.compile(r"^python(3(\.\d+)?)?$")

MAX_RESTARTS = 10  # RestartDatum requests honoured per datum run

Materialize = Callable[[RepoFile, Path], None]  # copy one input file's content to a path


@dataclass(frozen=True)
class JobContext:
    """What every datum of one job shares."""

    project: str
    pipeline: str
    job_id: str
    output_commit: str
    cmd: tuple[str, ...]
    stdin: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    accept_return_code: frozenset[int] = frozenset()
    working_dir: str = ""
    datum_timeout: float | None = None
    datum_tries: int = 3
    err_cmd: tuple[str, ...] = ()
    err_stdin: tuple[str, ...] = ()
    # transform.secrets resolved (localpachd.secrets.resolve): env vars, and the files of each
    # mount_path, written in a per-datum directory that stands in for it (`secret_dirs`).
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    secret_mounts: tuple[tuple[str, Mapping[str, bytes]], ...] = field(default=(), repr=False)
    mount_paths: tuple[str, ...] = ()  # the spec's mount paths (known before any job: prewarm)
    datum_batching: bool = False  # transform.datum_batching: one process per slot (batching.py)


@dataclass(frozen=True)
class DatumResult:
    ok: bool
    attempts: int
    outputs: tuple[OutputFile, ...] = ()
    reason: str = ""
    upload_bytes: int = 0
    recovered: bool = False  # failed, but err_cmd succeeded: the job does not fail


def rewrite_pfs(text: str, pfs_root: Path, mounts: Mapping[str, Path] | None = None) -> str:
    """`/pfs` (as a path, not inside another word) -> the scratch pfs directory; with `mounts`
    (a secret's mount_path -> the directory standing in for it), each mount path likewise."""
    if not mounts:
        return _PFS_RX.sub(lambda _m: str(pfs_root), text)
    return _mount_rx(tuple(mounts)).sub(
        lambda m: str(pfs_root) if m.group(0) == "/pfs" else str(mounts[m.group(0)]), text
    )


@functools.lru_cache(maxsize=64)
def _mount_rx(paths: tuple[str, ...]) -> re.Pattern[str]:
    """One pass for /pfs and every mount path (longest first), as `_PFS_RX` matches /pfs."""
    alts = "|".join(re.escape(p) for p in sorted({"/pfs", *paths}, key=len, reverse=True))
    return re.compile(rf"(?<![\w./-])(?:{alts})(?=/|$|[^\w.-])")


def secret_dirs(ctx: JobContext, pfs_root: Path) -> dict[str, Path]:
    """mount_path -> the datum's directory standing in for it, beside (never inside) pfs."""
    return {p: pfs_root.parent / "secrets" / str(i) for i, p in enumerate(ctx.mount_paths)}


def python_bin_dir() -> str:
    return str(Path(sys.executable).parent)


def build_argv(
    cmd: Sequence[str], pfs_root: Path, mounts: Mapping[str, Path] | None = None
) -> tuple[str, ...]:
    if not cmd:
        raise ValueError("transform.cmd is empty: Pachyderm needs a command to run")
    argv = [rewrite_pfs(a, pfs_root, mounts) for a in cmd]
    if _PYTHON_RX.match(argv[0]):
        argv[0] = sys.executable
    return tuple(argv)


def build_stdin(
    stdin: Sequence[str], pfs_root: Path, mounts: Mapping[str, Path] | None = None
) -> bytes | None:
    if not stdin:
        return None
    return ("\n".join(rewrite_pfs(line, pfs_root, mounts) for line in stdin) + "\n").encode()


def build_env(
    ctx: JobContext, datum: Datum, pfs_root: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The complete environment of a datum's process."""
    env = dict(os.environ if base is None else base)
    # `python3` inside sh scripts (stdin) must also find localpachd's interpreter.
    env["PATH"] = python_bin_dir() + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.update(ctx.secret_env)  # transform.env does not override them (the pod lists them last)
    env.update(datum_vars(ctx, datum, pfs_root))
    return env


def datum_vars(ctx: JobContext, datum: Datum, pfs_root: Path) -> dict[str, str]:
    """What `build_env` adds for this datum on top of the base environment and the secrets:
    transform.env (`/pfs` rewritten; not the names of secrets, which win over it), each input's
    path and `_COMMIT`, and the PACH_*/PPS_* variables. A batching worker hands exactly these to
    its user process per datum (`/pfs/.env`, NextDatumResponse.env): they never hold a secret."""
    mounts = secret_dirs(ctx, pfs_root)
    env = {k: rewrite_pfs(v, pfs_root, mounts) for k, v in ctx.env.items()
           if k not in ctx.secret_env}  # fmt: skip
    for inp in datum.inputs:
        rel = inp.path.strip("/")
        env[inp.name] = str(safe_join(pfs_root, inp.name, *([rel] if rel else [])))
        env[f"{inp.name}_COMMIT"] = inp.commit
    env.update(
        PACH_JOB_ID=ctx.job_id,
        PACH_DATUM_ID=datum.id,
        PACH_OUTPUT_COMMIT_ID=ctx.output_commit,
        PPS_PIPELINE_NAME=ctx.pipeline,
        PPS_PROJECT_NAME=ctx.project,
    )
    return env


def layout(datum: Datum, root: Path, materialize: Materialize, spare: Collection[str] = ()) -> Path:
    """Make `root` hold exactly `root/pfs/<name>/<path>` for every input file and an empty
    `root/pfs/out`, nothing else (but the entries of `root` named in `spare`, left as they
    are: a batching slot's secret folders, bound into its running process); returns `root/pfs`.

    `root` may hold an earlier datum's tree (a worker slot, or an earlier attempt): its
    directories that this datum also needs are kept, emptied and their mode reset; every other
    file and directory is removed. Creating and removing directories is what costs on ext4
    (~4 ms per datum for the iris model's 8 directories, against ~0.1 ms for its files), and a
    datum's tree is built ~1,000 times a job. Each call is a GIL round trip in the server too.
    Raises UnsafePath, before touching anything, if a name or path would leave `root/pfs`."""
    pfs_root = root / "pfs"
    needed = {root, pfs_root, pfs_root / "out"}
    dests = [(f, safe_join(pfs_root, inp.name, f.path.lstrip("/")))
             for inp in datum.inputs for f in inp.files]  # fmt: skip
    for inp in datum.inputs:
        needed.add(safe_join(pfs_root, inp.name))
    for _f, dest in dests:
        parent = dest.parent
        while parent not in needed and parent != pfs_root:
            needed.add(parent)
            parent = parent.parent
    if os.path.lexists(root):
        try:
            if root.is_symlink() or not root.is_dir():
                raise NotADirectoryError(root)
            _clear(root, needed, frozenset(root / name for name in spare))
        except OSError:  # something unusual (permissions, a file where a directory was)
            remove_tree(root)
    for d in sorted(needed, key=lambda p: len(p.parts)):  # parents first
        try:
            os.mkdir(d)
        except FileExistsError:
            pass  # kept from the earlier datum, already emptied
        except FileNotFoundError:
            os.makedirs(d)  # root's own parents
    for f, dest in dests:
        materialize(f, dest)
    return pfs_root


def _clear(path: Path, keep: set[Path], spare: frozenset[Path] = frozenset()) -> None:
    """Remove everything below the directory `path` except the directories in `keep`, which
    are emptied of files and get a fresh directory's mode back, and what `spare` names, left
    untouched; links are never followed."""
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        p = Path(entry.path)
        if p in spare:
            continue
        if entry.is_dir(follow_symlinks=False):
            _clear(p, keep)
            if p not in keep:
                os.rmdir(p)
            elif stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) != _dir_mode():
                os.chmod(p, _dir_mode())
        else:
            os.unlink(p)


@functools.cache
def _dir_mode() -> int:
    """The mode os.mkdir gives under this process's umask (read, never set: other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = 0o022
    return 0o777 & ~umask


def copy_file(src: str, dest: Path) -> None:
    """Copy a stored blob to a new file at `dest` (whose directory exists) with the fewest
    system calls: a copy, never a link — datums run as the server's user (often root, which
    ignores the blob's read-only mode) and must not be able to change a stored blob."""
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fout = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            while os.sendfile(fout, fin, None, 1 << 24):
                pass
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def remove_tree(root: Path) -> None:
    """shutil.rmtree with about half the system calls for a small scratch tree; anything
    unusual (a symlink to a directory, a permission problem) falls back to rmtree itself."""
    if os.path.islink(root) or os.path.isfile(root):
        os.unlink(root)
        return
    try:
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            for name in filenames:
                os.unlink(os.path.join(dirpath, name))
            for name in dirnames:
                os.rmdir(os.path.join(dirpath, name))
        os.rmdir(root)
    except OSError:
        shutil.rmtree(root, ignore_errors=True)


def _cwd(ctx: JobContext, root: Path, pfs_root: Path) -> Path:
    if not ctx.working_dir:
        return root
    return Path(rewrite_pfs(ctx.working_dir, pfs_root, secret_dirs(ctx, pfs_root)))


def _process(
    ctx: JobContext, datum: Datum, pfs_root: Path, log_path: Path, cwd: Path, err: bool = False
) -> DatumRun:
    """The one place a datum's process is described: the transform's cmd and stdin, or its
    err_cmd and err_stdin (`err`), rewritten for the scratch tree at `pfs_root`."""
    mounts = secret_dirs(ctx, pfs_root)
    return DatumRun(
        argv=build_argv(ctx.err_cmd if err else ctx.cmd, pfs_root, mounts),
        env=build_env(ctx, datum, pfs_root),
        cwd=cwd,
        stdin=build_stdin(ctx.err_stdin if err else ctx.stdin, pfs_root, mounts),
        stdout_path=log_path,
        stderr_path=log_path,
        timeout=ctx.datum_timeout,
        binds=datum_binds(ctx, pfs_root),
    )


def datum_binds(ctx: JobContext, pfs_root: Path) -> tuple[tuple[str, str], ...]:
    """What a namespace-capable runtime mounts where the spec names it: the scratch pfs tree at
    /pfs, each secret's directory (written by `secret_files`) at its mount_path."""
    dirs = secret_dirs(ctx, pfs_root)
    return ((str(pfs_root), "/pfs"), *((str(dirs[p]), p) for p, _data in ctx.secret_mounts))


@dataclass(frozen=True)
class DatumIO:
    """How a datum meets this machine: the runtime that runs it, how an input file's content is
    copied in (`materialize`) and an output stored (`ingest`), the job's signals, and bounds."""

    runtime: Runtime
    materialize: Materialize
    ingest: Ingest
    cancelled: Callable[[], bool] = lambda: False  # the job was stopped
    restarted: Callable[[], bool] = lambda: False  # (once) RestartDatum killed the last attempt
    reuse_root: bool = False  # `root` is a worker slot: emptied by the next datum, not removed
    limits: Limits = DEFAULT_LIMITS  # of the outputs collected


def prototype_run(ctx: JobContext, root: Path) -> DatumRun | None:
    """The process every datum of `ctx` would start, minus its inputs, with `root` standing
    for the datum's scratch directory (nothing is laid out): what a runtime prepares from at
    CreatePipeline (the warm runtime's prewarm). None without a command. With datum batching,
    the slot's process (`slot_process`): its startup environment is what picks a zygote."""
    if not ctx.cmd:
        return None
    if ctx.datum_batching:
        return replace(slot_process(ctx, root, Path(os.devnull)), stdin=None)
    pfs_root = root / "pfs"
    run = _process(ctx, Datum(()), pfs_root, Path(os.devnull), _cwd(ctx, root, pfs_root))
    return replace(run, stdin=None, timeout=None)


# Added to a batching slot's process environment: Python writes what it prints at once, so
# all it printed for a datum is in its log when it asks for the next one (localpachd.batching).
BATCH_STARTUP_ENV = {"PYTHONUNBUFFERED": "1"}


def slot_process(ctx: JobContext, root: Path, log_path: Path) -> DatumRun:
    """The one user process of a batching worker slot whose scratch tree is `root`: the
    transform's cmd and stdin with the job's environment and no datum's (no input variables;
    the slot sets PACH_DATUM_ID and its worker API), stdout and stderr appended to `log_path`,
    no timeout (datum_timeout bounds each datum, not the process)."""
    pfs_root = root / "pfs"
    run = _process(ctx, Datum(()), pfs_root, log_path, _cwd(ctx, root, pfs_root))
    return replace(run, env={**run.env, **BATCH_STARTUP_ENV}, timeout=None)


def _failure(ctx: JobContext, outcome: DatumOutcome) -> str:
    if outcome.timed_out:
        return f"datum timed out after {ctx.datum_timeout}s"
    return f"exit status {outcome.returncode}"


def run_datum(
    ctx: JobContext, datum: Datum, root: Path, log_path: Path, io: DatumIO
) -> DatumResult:
    """Run one datum with up to `datum_tries` attempts; outputs only from a successful one.

    `io.restarted()` tells (once) that the last attempt was killed by RestartDatum: that attempt
    does not count as a try. An attempt whose output cannot be stored (`localpachd.outputs`,
    within `io.limits`) fails like a non-zero exit, but runs no err_cmd. After each other failed
    attempt `err_cmd` runs (`failed_attempt`); one that succeeds makes the datum RECOVERED
    unless a later attempt succeeds. The log's directory must exist. `root` is removed at the
    end, unless `io.reuse_root` (a worker slot: the next datum's `layout` empties it, the
    caller removes it when the job is done). A name that would lay the datum out beyond `root`
    fails it at once.
    """
    if not ctx.cmd:
        # Real Pachyderm falls back to the image's entrypoint; there is no image here.
        reason = "transform.cmd is empty: localpachd runs no image, so it needs a command"
        note(log_path, reason)
        return DatumResult(False, 0, reason=reason)
    try:
        return _attempts(ctx, datum, root, log_path, io)
    except UnsafePath as exc:
        reason = f"the datum's inputs cannot be laid out: {exc}"
        note(log_path, reason)
        _done(root, io.reuse_root)
        return DatumResult(False, 1, reason=reason)


@dataclass(frozen=True)
class Collect:
    ingest: Ingest
    limits: Limits
    cancelled: Callable[[], bool]

    def __call__(self, pfs_root: Path, log_path: Path) -> tuple[OutputFile, ...]:
        """The attempt's outputs; raises OutputError (the reason) if they cannot be stored."""
        got = collect(str(pfs_root / "out"), str(pfs_root), self.ingest, self.limits,
                      self.cancelled)  # fmt: skip
        for line in got.notes:
            note(log_path, line)
        return got.files


def _attempts(ctx: JobContext, datum: Datum, root: Path, log_path: Path, io: DatumIO
              ) -> DatumResult:  # fmt: skip
    cancelled, reuse_root = io.cancelled, io.reuse_root
    outputs = Collect(io.ingest, io.limits, cancelled)
    reason, tally, restarts = "", Tally(ctx.datum_tries), 0
    while tally.verdict is Verdict.RETRY and not cancelled():
        pfs_root = layout(datum, root, io.materialize)  # a fresh scratch tree per attempt
        run = _process(ctx, datum, pfs_root, log_path, _cwd(ctx, root, pfs_root))
        if not run.cwd.is_dir():
            reason = f"working_dir {ctx.working_dir!r} does not exist on this machine"
            note(log_path, reason)
            _done(root, reuse_root)
            return DatumResult(False, tally.attempt, reason=reason)
        if cancelled():  # stopped while the scratch tree was laid out
            break
        started = time.monotonic()
        with secret_files(ctx, pfs_root):
            outcome = io.runtime.run(run)
        used = math.inf if outcome.timed_out else time.monotonic() - started
        ok = outcome.returncode == 0 or outcome.returncode in ctx.accept_return_code
        if ok and not outcome.timed_out and not cancelled():
            try:
                files = outputs(pfs_root, log_path)
            except OutputError as exc:  # Pachyderm's upload is outside Datum.run: no err_cmd
                reason = str(exc)
                tally = failed_attempt(ctx, datum, root, log_path, io, tally, reason, None)
                continue
            _done(root, reuse_root)
            return DatumResult(True, tally.attempt, files,
                               upload_bytes=sum(o.size for o in files))  # fmt: skip
        if io.restarted() and restarts < MAX_RESTARTS and not cancelled():
            restarts += 1
            note(log_path, "datum restarted (RestartDatum)")
            continue
        if cancelled():
            break
        reason = _failure(ctx, outcome)
        tally = failed_attempt(ctx, datum, root, log_path, io, tally, reason, used)
    _done(root, reuse_root)
    return gave_up(tally, reason, cancelled())


def gave_up(tally: Tally, reason: str, stopped: bool) -> DatumResult:
    """The result of a datum none of whose attempts succeeded (`stopped`: the job was stopped),
    on both datum paths: FAILED, or RECOVERED when an err_cmd succeeded (`tally.verdict`)."""
    if stopped:
        return DatumResult(False, tally.attempt, reason="job was stopped")
    return DatumResult(False, tally.failed, reason=reason,
                       recovered=tally.verdict is Verdict.RECOVERED)  # fmt: skip


def _done(root: Path, reuse: bool) -> None:
    if not reuse:
        remove_tree(root)


def failed_attempt(
    ctx: JobContext, datum: Datum, root: Path, log_path: Path, io: DatumIO, tally: Tally,
    reason: str, used: float | None,
) -> Tally:  # fmt: skip
    """After attempt `tally.attempt` failed with `reason`, as Pachyderm's `Datum.run`: note it,
    run err_cmd (`used`: seconds of the attempt's datum_timeout it took; None: err_cmd does not
    run, the failure came after the user code) and count it (`attempts.after_failure`; what
    comes next is the result's `verdict`). Both datum paths call this: they cannot drift."""
    note(log_path, f"attempt {tally.attempt}/{max(1, tally.tries)} failed: {reason}")
    ok = None
    if ctx.err_cmd and used is not None:
        ok = run_err_cmd(ctx, datum, root, log_path, io, err_cmd_time(ctx.datum_timeout, used))
    return after_failure(tally, ok)[1]


def run_err_cmd(ctx: JobContext, datum: Datum, root: Path, log_path: Path, io: DatumIO,
                timeout: float | None) -> bool:  # fmt: skip
    """Pachyderm's err_cmd (`driver.RunUserErrorHandlingCode`) after a failed attempt: in that
    attempt's /pfs as it left it (`root/pfs`, outputs included), with the datum's environment,
    err_stdin, the transform's working_dir, for what is left of the attempt's datum_timeout
    (`timeout`; 0 or less: it cannot start). An exit status of 0 or one in accept_return_code
    succeeds: the datum is RECOVERED unless a later attempt succeeds."""
    if timeout is not None and timeout <= 0:
        note(log_path, f"err_cmd not run: the datum's timeout ({ctx.datum_timeout}s) has passed")
        return False
    pfs_root = root / "pfs"
    run = _process(ctx, datum, pfs_root, log_path, _cwd(ctx, root, pfs_root), err=True)
    with secret_files(ctx, pfs_root):
        outcome = io.runtime.run(replace(run, timeout=timeout))
    code = outcome.returncode
    ok = not outcome.timed_out and (code == 0 or code in ctx.accept_return_code)
    if ok:
        note(log_path, "err_cmd succeeded: datum recovered")
    elif outcome.timed_out:
        note(log_path, f"err_cmd failed: the datum's timeout ({ctx.datum_timeout}s) has passed")
    else:
        note(log_path, f"err_cmd failed: exit status {code}")
    return ok


@contextlib.contextmanager
def secret_files(ctx: JobContext, pfs_root: Path) -> Iterator[None]:
    """Each secret mount's keys as files (0600, in a 0700 directory) while the datum runs;
    removed when it ends, whatever happened."""
    if not ctx.secret_mounts:
        yield
        return
    base = pfs_root.parent / "secrets"
    dirs = secret_dirs(ctx, pfs_root)
    if os.path.lexists(base):
        remove_tree(base)  # left by an attempt cut short
    try:
        os.mkdir(base, 0o700)
        for path, data in ctx.secret_mounts:
            os.mkdir(dirs[path], 0o700)
            for key, value in data.items():
                fd = os.open(dirs[path] / key,
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600)  # fmt: skip
                with os.fdopen(fd, "wb") as f:
                    f.write(value)
        yield
    finally:
        remove_tree(base)


def note(path: Path, line: str) -> None:
    logs.append(path, f"localpachd: {line}")  # dropped if the pipeline was deleted meanwhile
