"""Decides whether a datum's argv can run warm, and which zygote may serve it (pure functions).

Called by `localpachd.runtime_warm` for every datum. Only the two plain forms are warm:
`<sys.executable> -m MODULE ARGS...` and `<sys.executable> SCRIPT.py ARGS...`; interpreter
options (-u, -O, -c, -X ...) and anything else go to the subprocess runtime, unchanged.

A zygote is shared by datums whose *startup environment* is equal: the variables an interpreter
or a native library reads once, at start or at import (PYTHON*, locale, thread counts, PATH,
HOME ...). Per-datum variables (input paths, PACH_DATUM_ID ...) are not part of the key: the
forked child gets its own complete environment before any datum code runs.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "HOME", "PATH", "TMPDIR", "TZ", "SHELL"})
_STARTUP_PREFIXES = ("PYTHON", "LC_", "LD_", "OMP_", "OPENBLAS_", "MKL_", "MPL", "CUDA_", "KMP_")
# Read at start by a fresh interpreter, but applied by each forked child (warm.child._new_stdio).
_PER_CHILD = frozenset({"PYTHONUNBUFFERED"})
# Variables under which a forked interpreter cannot be the same as a fresh one.
_NEVER_WARM = frozenset({"PYTHONINSPECT", "PYTHONHOME", "PYTHONEXECUTABLE", "PYTHONSTARTUP"})


@dataclass(frozen=True)
class Target:
    """What a warm child runs: a module (`python -m name`) or a script file (`python path`)."""

    kind: str  # "module" | "script"
    name: str  # dotted module name, or the script path exactly as given in argv
    args: tuple[str, ...]  # the arguments after the module name or script


def classify(argv: tuple[str, ...], cwd: str, executable: str = sys.executable) -> Target | None:
    """The warm target of `argv`, or None when it must run as a plain subprocess."""
    if len(argv) < 2 or not _is_interpreter(argv[0], executable):
        return None
    if argv[1] == "-m":
        if len(argv) >= 3 and _DOTTED.match(argv[2]):
            return Target("module", argv[2], tuple(argv[3:]))
        return None
    script = argv[1]
    if script.startswith("-") or not script.endswith(".py"):
        return None
    if not os.path.isfile(os.path.join(cwd, script)):
        return None  # let python itself report "can't open file" exactly as it does
    return Target("script", script, tuple(argv[2:]))


def _is_interpreter(arg0: str, executable: str) -> bool:
    if arg0 == executable:
        return True
    try:
        return os.path.realpath(arg0) == os.path.realpath(executable) and os.path.isabs(arg0)
    except OSError:
        return False


def is_startup_var(name: str) -> bool:
    """Whether an interpreter or a library may read `name` once at start or at import (and the
    forked child cannot apply it itself: it builds its stdio per PYTHONUNBUFFERED, so a batching
    slot, which sets it, shares the zygote of the same pipeline's per-datum runs)."""
    return name not in _PER_CHILD and (
        name in _STARTUP_NAMES
        or name.startswith(_STARTUP_PREFIXES)
        or name.endswith("_NUM_THREADS")
    )


def startup_env(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of `env` that must be equal for two datums to share a zygote."""
    return tuple(sorted((k, v) for k, v in env.items() if is_startup_var(k)))


def warm_blocker(env: dict[str, str]) -> str | None:
    """Why this environment cannot run warm (None: it can)."""
    for name in sorted(_NEVER_WARM):
        if env.get(name):
            return f"{name} is set"
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if entry and not os.path.isabs(entry):
            return f"PYTHONPATH entry {entry!r} is relative to each datum's working directory"
    return None
