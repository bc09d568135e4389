"""A real `/pfs` for a datum where the kernel allows it: a private mount namespace per datum.

`enter` is called in a datum's own process before exec: forked by the namespace launcher
(`runtime_nslaunch`, how `runtime_subprocess` starts datums when `mode()` is NAMESPACE) or from a
warm zygote (`warm.child`). `wrap` runs this file as a per-datum helper instead: the subprocess
runtime's fallback when its launcher cannot start a datum, and `runtime_longrun`'s way (one
long-lived process). `localpachd.cli` prints `mode()` at start-up (`mode()` logs it once). Run as a
script (`python -I -S runtime_pfsmount.py ...`, stdlib only, single-threaded: never a fork of the
threaded server), the helper is the datum's first process: it enters a new mount namespace (plus a
user namespace when not root), builds a new root on a tmpfs from bind mounts of every top-level
entry of the host's `/` except `/pfs`, binds the datum's scratch `pfs` tree at `/pfs` and each
secret's directory at its `mount_path`, chroots there, returns to the same working directory and
execs the datum's command with the environment and signal dispositions Popen gave it. Every mount
is private to that process tree: the host's own `/pfs` (present or not) and every other process
never see it. Where the kernel refuses (no privilege, user namespaces disabled, seccomp), `mode()`
is REWRITE and datums run as before: `/pfs` rewritten in cmd, stdin and env only (the worker
rewrites in both modes, so well-behaved stages run the same). A secret mount path inside a host
directory that lacks it cannot be created without touching the host: that one stays rewrite-only.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence

NAMESPACE = "namespace"  # each datum sees its own scratch tree at a real /pfs
REWRITE = "rewrite"  # /pfs rewritten in cmd, stdin and env values only

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2
SETUP_FAILED = 126  # the helper's exit status when the namespace cannot be set up
NOT_FOUND = 127  # the command cannot be started (as a shell says)
PROBE_TIMEOUT = 30.0


def wrap(argv: Sequence[str], binds: Sequence[tuple[str, str]], root: str) -> list[str]:
    """The argv that runs `argv` with each (host dir, target path) of `binds` mounted at its
    target, the new root built under `root` (an empty or absent directory of ours)."""
    out = [sys.executable, "-I", "-S", __file__, "--root", root]
    for src, dst in binds:
        out += ["--bind", src, dst]
    return [*out, "--", *argv]


def parse(args: Sequence[str]) -> tuple[str, list[tuple[str, str]], list[str]]:
    """`wrap`'s arguments back: (root, binds, argv). ValueError if malformed."""
    root, binds, i = "", [], 0
    while i < len(args) and args[i] != "--":
        if args[i] == "--root" and i + 1 < len(args):
            root, i = args[i + 1], i + 2
        elif args[i] == "--bind" and i + 2 < len(args):
            binds.append((args[i + 1], args[i + 2]))
            i += 3
        else:
            raise ValueError(f"unexpected argument {args[i]!r}")
    if not root or i + 1 >= len(args):
        raise ValueError("usage: runtime_pfsmount.py --root DIR [--bind SRC DST]... -- CMD...")
    return root, binds, list(args[i + 1 :])


_found: list[str] = []  # mode(), once found (no functools: the helper imports only the least)


MODE_ENV = "LOCALPACHD_PFS_MODE"  # auto (default) | namespace | rewrite; `serve --pfs-mode`
MODES = ("auto", NAMESPACE, REWRITE)


def mode() -> str:
    """NAMESPACE if this machine lets the server give datums a private /pfs (found once, by
    running the helper for real), else REWRITE. `LOCALPACHD_PFS_MODE=rewrite` skips namespaces
    (a namespace datum costs ~2-3 ms more CPU than a plain one: its fork from the launcher and
    its mounts; through the per-datum helper it cost ~28 ms)."""
    if not _found:
        import logging  # here: the helper never logs

        wanted = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
        if wanted not in MODES:
            raise ValueError(f"{MODE_ENV}={wanted!r}: choose one of {', '.join(MODES)}")
        _found.append(REWRITE if wanted == REWRITE or not probe() else NAMESPACE)
        log = logging.getLogger("localpachd")
        log.log(logging.INFO if _found[0] == NAMESPACE else logging.WARNING,
                "/pfs mode %s: %s", _found[0], describe(_found[0]))  # fmt: skip
    return _found[0]


def forget_mode() -> None:
    """Find the mode again at the next `mode()` (tests and benchmarks that switch it in-process)."""
    _found.clear()


PROBE_TRIES = 2  # a busy machine can fail one start (EAGAIN, a slow fork): ask once more


def probe() -> bool:
    """Whether a wrapped `sh` sees a bound directory at /pfs (the kernel allows namespaces).
    Tried `PROBE_TRIES` times: the answer holds for the server's whole life, so one transient
    failure must not turn every datum to rewrite mode; the last failure is logged."""
    failure = ""
    for _ in range(PROBE_TRIES):
        failure = _probe_once()
        if not failure:
            return True
    import logging  # here: the helper never logs

    logging.getLogger("localpachd").info("/pfs namespace probe failed: %s", failure)
    return False


def _probe_once() -> str:
    """Empty if the probe saw its file at /pfs, else why not (one line)."""
    import subprocess  # here, not at the top: the helper itself starts as fast as it can
    import tempfile

    with tempfile.TemporaryDirectory(prefix="localpachd-pfsprobe-") as tmp:
        pfs = os.path.join(tmp, "pfs")
        os.mkdir(pfs)
        with open(os.path.join(pfs, "probe"), "w") as f:
            f.write("ok")
        argv = wrap(["sh", "-c", "cat /pfs/probe"], [(pfs, "/pfs")], os.path.join(tmp, "ns"))
        try:
            got = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT, check=False,
                                 stdin=subprocess.DEVNULL)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if got.returncode == 0 and got.stdout == b"ok":
            return ""
        err = got.stderr.decode(errors="replace").strip().splitlines()
        return f"exit status {got.returncode}" + (f": {err[-1][:200]}" if err else "")


def describe(current: str) -> str:
    """The one start-up line that says how datums see /pfs."""
    if current == NAMESPACE:
        return "datums see a real /pfs (a private mount namespace per datum)"
    if os.environ.get(MODE_ENV, "").strip().lower() == REWRITE:
        return ("datums see /pfs only where cmd, stdin and env name it (rewritten to a scratch "
                f"directory, as {MODE_ENV}=rewrite / --pfs-mode rewrite asks)")
    return ("datums see /pfs only where cmd, stdin and env name it (rewritten to a scratch "
            "directory: this kernel refuses private mount namespaces)")  # fmt: skip


# --- the helper (runs in the datum's own process, before exec) --------------------------------

def libc() -> ctypes.CDLL:
    """The C library with the calls `enter` makes already looked up (a launcher that forks many
    datums looks them up once: `runtime_nslaunch`)."""
    lib = ctypes.CDLL(None, use_errno=True)
    for name in ("unshare", "mount", "umount2", "prctl"):
        getattr(lib, name)
    return lib


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc: ctypes.CDLL, src: str | None, dst: str, fstype: str | None, flags: int) -> None:
    rc = libc.mount(_bytes(src), dst.encode(), _bytes(fstype), ctypes.c_ulong(flags), None)
    _check(rc, f"mount {src or fstype} on {dst}")


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _enter_namespace(libc: ctypes.CDLL) -> None:
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:  # unprivileged: a user namespace mapping us to ourselves, then the mount namespace
        _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWUSER), "unshare(CLONE_NEWNS|CLONE_NEWUSER)")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates to the host


Entry = tuple[str, str, str]  # (name, "link" | "dir" | "file", link target or "")


def top_level() -> tuple[Entry, ...]:
    """Every top-level entry of the host's `/` but `pfs`, as `_build_root` recreates it."""
    out: list[Entry] = []
    for name in sorted(os.listdir("/")):
        host = "/" + name
        if name == "pfs":
            continue
        if os.path.islink(host):
            out.append((name, "link", os.readlink(host)))
        elif os.path.isdir(host):
            out.append((name, "dir", ""))
        elif os.path.exists(host):
            out.append((name, "file", ""))
    return tuple(out)


def _build_root(libc: ctypes.CDLL, root: str, entries: Sequence[Entry]) -> None:
    """A tmpfs at `root` holding `entries` (`top_level()`): links copied, the rest bound
    (directories recursively) from the host's `/`."""
    os.makedirs(root, exist_ok=True)
    _mount(libc, "tmpfs", root, "tmpfs", 0)
    for name, kind, target in entries:
        host, new = "/" + name, os.path.join(root, name)
        if kind == "link":
            os.symlink(target, new)
        elif kind == "dir":
            os.mkdir(new)
            _mount(libc, host, new, None, _MS_BIND | _MS_REC)
        else:
            open(new, "w").close()
            _mount(libc, host, new, None, _MS_BIND)


def _bind_target(libc: ctypes.CDLL, root: str, src: str, dst: str) -> None:
    """Bind `src` at `dst` in the new root; a target inside a host directory that lacks it is
    left to the rewriting (creating it would change the host)."""
    parts = [p for p in dst.split("/") if p and p != "."]
    if not parts or ".." in parts:
        return
    new = os.path.join(root, *parts)
    top_is_ours = parts[0] == "pfs" or not os.path.lexists(os.path.join("/", parts[0]))
    if top_is_ours:
        os.makedirs(new, exist_ok=True)
    elif not os.path.isdir(new) or os.path.islink(new):
        return
    _mount(libc, src, new, None, _MS_BIND | _MS_REC)


def enter(root: str, binds: Sequence[tuple[str, str]], lib: ctypes.CDLL | None = None,
          entries: Sequence[Entry] | None = None) -> None:
    """Move this (single-threaded) process into its own mount namespace whose / is a new root
    built under `root` with `binds` mounted, in the same working directory. Raises OSError.
    Called by `main` before exec, by a datum forked from the namespace launcher (which passes
    its `libc()` and a recent `top_level()`), and by a warm datum forked from its zygote."""
    cwd = os.getcwd()
    lib = lib if lib is not None else libc()
    _enter_namespace(lib)
    _build_root(lib, root, entries if entries is not None else top_level())
    for src, dst in binds:
        _bind_target(lib, root, src, dst)
    os.chroot(root)
    os.chdir(cwd)
    # The new root's own view of itself (below the scratch dir in the bound host tree).
    lib.umount2(root.encode(), _MNT_DETACH)


def setup_failure(exc: OSError) -> str:
    return (f"localpachd: cannot give the datum a private /pfs: {exc} (run the server with the "
            "privilege to create mount namespaces, or where user namespaces are allowed)")


def ns_root(binds: Sequence[tuple[str, str]]) -> str:
    """Where a datum's new root is built: `.ns` beside its scratch pfs tree (binds[0])."""
    return os.path.join(os.path.dirname(binds[0][0]), ".ns")


def cannot_start(command: str, exc: OSError, filename: str) -> str:
    """The line the subprocess runtime writes when Popen cannot start `command` (Popen names
    the command itself, not the PATH entry execvpe tried last)."""
    return f"localpachd: cannot start {command!r}: [Errno {exc.errno}] {exc.strerror}: {filename!r}"


def initial_environ() -> dict[bytes, bytes]:
    """This process's environment as it was exec'd, before Python's start-up changed it (locale
    coercion adds LC_CTYPE=C.UTF-8 where the locale is C): what the datum must get."""
    with open("/proc/self/environ", "rb") as f:
        entries = f.read().split(b"\0")
    pairs = (e.split(b"=", 1) for e in entries if b"=" in e and not e.startswith(b"="))
    return {k: v for k, v in pairs}


def _default_signals() -> None:
    """SIGPIPE and SIGXFSZ back to their defaults (Python ignores them; Popen restores them).
    Through `_signal`, which every interpreter has loaded at start (`signal` costs 4 ms)."""
    sig = sys.modules.get("_signal") or __import__("signal")
    for name in ("SIGPIPE", "SIGXFSZ"):
        sig.signal(getattr(sig, name), sig.SIG_DFL)


def main(args: Sequence[str]) -> int:
    """The helper: set up the namespace, then exec the datum's command (never returns on
    success) with the environment and signal dispositions Popen gave this process. Errors go
    to stderr (the datum's log) with what to do."""
    try:
        root, binds, argv = parse(args)
        env = initial_environ()
    except (ValueError, OSError) as exc:
        print(f"localpachd runtime_pfsmount: {exc}", file=sys.stderr)
        return 2
    try:
        enter(root, binds)
    except OSError as exc:
        print(setup_failure(exc), file=sys.stderr)
        return SETUP_FAILED
    _default_signals()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(cannot_start(argv[0], exc, argv[0]), file=sys.stderr)
    return NOT_FOUND


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
