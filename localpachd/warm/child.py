"""What a forked child does to become exactly the process `python -m MODULE` / `python x.py` is.

Called by `localpachd.warm.zygote` right after `os.fork()`, in the child, once the zygote's own
sockets are closed. It never returns: the datum's exit status is the child's exit status.

Order matters and mirrors a fresh interpreter: own session (as the subprocess runtime's
start_new_session), stdio fds 0/1/2 replaced at OS level (C code and subprocesses write there
too), working directory, a completely replaced environment, new sys.std* objects built the
way CPython builds them, sys.path recomputed for this cwd/script, fresh randomness, a fresh
`__main__`; then the code runs; then CPython's exit sequence (threads joined, atexit, flush,
`__main__` finalised, C stdio flushed) before `os._exit`.

Known differences from a fresh process: str hashes use the zygote's hash seed unless
PYTHONHASHSEED is set (then equal); sys.modules already holds the preloaded modules, so their
import-time side effects happened once, in the zygote; one extra close-on-exec descriptor (the
reply socket, numbered >= 1000) is open while the datum runs.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import io
import itertools
import json
import os
import signal
import sys
import types
from importlib.machinery import EXTENSION_SUFFIXES, SourceFileLoader
from typing import Any, NoReturn

from localpachd import peercheck, runtime_pfsmount
from localpachd.warm import codecache

# localpachd.workerapi.WORKER_TOKEN_ENV, not imported from there: that would load grpc into
# every zygote (tests/unit/test_batching.py checks they are equal).
TOKEN_ENV = "LOCALPACHD_WORKER_TOKEN"

_LIBC = ctypes.CDLL(None)
_REPLY = -1


def become_datum(
    req: dict[str, Any],
    stdio: list[int],
    base_path: list[str],
    startup: frozenset[str],
    own: list[str],
    reply: int,
) -> NoReturn:
    """Turn this forked process into the datum's process and run it; exits with its status.

    `own` names the zygote's own modules (not in a fresh process). Nothing here iterates
    sys.modules: touching every module name's refcount would copy ~1,500 shared pages.
    `reply` is the runtime's socket for this datum (kept on a high fd number so the datum's
    own files get the numbers a fresh process would): the exit code is sent on it just before
    `os._exit`, so the runtime need not wait for the kernel to tear down this large address
    space (10-20 ms per datum).
    """
    global _REPLY
    _REPLY = reply
    os.setsid()
    _reset_signals()
    for target, fd in zip((0, 1, 2), stdio, strict=True):
        os.dup2(fd, target)
    for fd in set(stdio):
        os.close(fd)
    os.chdir(req["cwd"])
    if "ns_root" in req:  # a real /pfs: this fork's own mount namespace, as a cold datum's
        _enter_namespace(req)
    argv: list[str] = req["argv"]
    env: dict[str, str] = req["env"]
    _replace_environ(env)
    _present_token(env)
    _new_stdio()
    path0 = _path0(req)
    if path0 and _shadowed(path0, startup):
        os.execve(sys.executable, argv, env)  # a local file shadows a preloaded module: go cold
    sys.path[:] = ([path0] if path0 else []) + base_path
    sys.orig_argv[:] = argv
    _fresh_randomness()
    for name in own:
        sys.modules.pop(name, None)
    before = len(sys.modules)
    code = _run(req, argv)
    _exit(code, before)


def _enter_namespace(req: dict[str, Any]) -> None:
    try:
        runtime_pfsmount.enter(req["ns_root"], [(src, dst) for src, dst in req["binds"]])
    except OSError as exc:
        os.write(2, (runtime_pfsmount.setup_failure(exc) + "\n").encode())
        os._exit(runtime_pfsmount.SETUP_FAILED)


def _present_token(env: dict[str, str]) -> None:
    """A batching slot's process shows its worker token in /proc/<pid>/environ, where its
    endpoint looks for it (`localpachd.peercheck`): a fork keeps the zygote's initial
    environment block, whose placeholder (`reserve`, in `warm.pool`) gets this token."""
    token = env.get(TOKEN_ENV)
    if token and not peercheck.present(TOKEN_ENV, token):
        os.write(2, b"localpachd: this warm process cannot show its worker token in "
                    b"/proc/self/environ: its worker API will refuse it\n")  # fmt: skip


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _replace_environ(env: dict[str, str]) -> None:
    coerced = os.environ.get("LC_CTYPE")
    if coerced is not None and "LC_CTYPE" not in env:
        # PEP 538: the interpreter set LC_CTYPE at startup (C locale); the zygote's startup
        # environment equals this datum's, so a fresh interpreter would have set it too.
        env = {**env, "LC_CTYPE": coerced}
    os.environ.clear()  # unsetenv: C code and subprocesses see exactly `env`
    os.environ.update(env)
    import time

    time.tzset()
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None  # type: ignore[attr-defined]  # recomputed from this TMPDIR on first use


def _new_stdio() -> None:
    """sys.stdin/stdout/stderr as CPython's create_stdio builds them over the new fds 0/1/2,
    buffered unless the datum's own environment (already in place) sets PYTHONUNBUFFERED, as
    a fresh interpreter reads it: that variable is no part of the zygote key (warm.target)."""
    old = sys.__stdout__
    buffered = not os.environ.get("PYTHONUNBUFFERED")
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        template = getattr(sys, f"__{name}__") or old
        stream = _stdio(fd, name, mode, buffered, template)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _stdio(fd: int, name: str, mode: str, buffered: bool, template: Any) -> io.TextIOWrapper:
    buffered = buffered or mode == "r"  # CPython always buffers stdin
    buf: Any = io.open(fd, mode + "b", -1 if buffered else 0, closefd=False)  # noqa: UP020
    raw = buf.raw if buffered else buf
    raw.name = f"<{name}>"
    isatty = os.isatty(fd)
    text = io.TextIOWrapper(
        buf,
        encoding=template.encoding,
        errors="backslashreplace" if name == "stderr" else template.errors,
        newline="\n",
        line_buffering=buffered and (isatty or name == "stderr"),
        write_through=not buffered,
    )
    text.mode = mode  # type: ignore[misc]  # CPython sets it too
    return text


def _path0(req: dict[str, Any]) -> str | None:
    """sys.path[0] as a fresh interpreter computes it (None with PYTHONSAFEPATH)."""
    if sys.flags.safe_path:
        return None
    if req["kind"] == "module":
        return os.getcwd()
    return os.path.dirname(os.path.realpath(os.path.abspath(str(req["name"]))))


def _shadowed(path0: str, startup: frozenset[str]) -> bool:
    """Whether a file in path0 would be imported instead of an already-loaded module."""
    try:
        entries = os.listdir(path0)
    except OSError:
        return False
    suffixes = (".py", ".pyc", *EXTENSION_SUFFIXES)
    for entry in entries:
        name = next((entry[: -len(s)] for s in suffixes if entry.endswith(s)), None)
        if name is None and os.path.isfile(os.path.join(path0, entry, "__init__.py")):
            name = entry
        if name and name in sys.modules and name not in startup:
            return True
    return False


def _fresh_randomness() -> None:
    """A fresh process gets fresh random state; a fork would repeat the zygote's."""
    if "random" in sys.modules:
        sys.modules["random"].seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _run(req: dict[str, Any], argv: list[str]) -> int:
    main = types.ModuleType("__main__")
    main.__dict__.update(__annotations__={}, __builtins__=sys.modules["builtins"])
    sys.modules["__main__"] = main
    try:
        if req["kind"] == "module":
            sys.argv[:] = ["-m", *argv[3:]]
            _run_module(req["name"])
        else:
            sys.argv[:] = argv[1:]
            _run_script(main, req["name"])
    except SystemExit as e:
        return _system_exit_code(e)
    except KeyboardInterrupt:
        _print_exception(sys.exc_info())
        return -signal.SIGINT
    except BaseException:
        _print_exception(sys.exc_info())
        return 1
    return 0


def _run_module(name: str) -> None:
    import runpy

    runpy._run_module_as_main(name, alter_argv=True)  # type: ignore[attr-defined]


def _run_script(main: types.ModuleType, given: str) -> None:
    filename = given if os.path.isabs(given) else os.path.join(os.getcwd(), given)
    with open(filename, "rb") as f:
        source = f.read()
    main.__dict__.update(
        __file__=filename, __cached__=None, __loader__=SourceFileLoader("__main__", filename)
    )
    code = codecache.lookup(filename) or compile(source, filename, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def _print_exception(info: Any) -> None:
    etype, value, tb = info
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # drop our own frames: the traceback starts where python's would
    if value is not None:
        value.__traceback__ = tb  # CPython's printer reads the traceback from the exception
    sys.excepthook(etype, value, tb)


def _system_exit_code(e: SystemExit) -> int:
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:  # noqa: BLE001 - like CPython, an unprintable exit message is dropped
        pass
    return 1


def _exit(code: int, before: int) -> NoReturn:
    """CPython's exit sequence, minus tearing down the preloaded libraries."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    code = _flush(code)
    _finalize_user_modules(before)
    code = _flush(code)
    _LIBC.fflush(None)
    _report(code)
    if code < 0:  # the datum was interrupted: die of that signal, as CPython does
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _report(code: int) -> None:
    try:
        os.write(_REPLY, json.dumps({"exit": code}).encode())
    except OSError:
        pass  # the datum closed it: the zygote reports the status when it reaps the child


def _flush(code: int) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - CPython reports 120 when stdio cannot be flushed
            code = 120 if code == 0 else code
    return code


def _finalize_user_modules(before: int) -> None:
    """Clear __main__ and the datum's own modules so their objects' finalisers run (a global
    file object is flushed, a temporary directory removed), as interpreter shutdown does.
    Modules imported during the run are the last entries of sys.modules (insertion order)."""
    main = sys.modules.get("__main__")
    names = list(itertools.islice(reversed(sys.modules), max(len(sys.modules) - before, 0)))
    for module in [main, *(sys.modules.get(n) for n in names)]:
        if module is not None:
            try:
                module.__dict__.clear()
            except Exception:  # noqa: BLE001 - a module that refuses to clear keeps its state
                pass
    gc.collect()
