"""Compiled code of the project's source files, kept by the zygote and reused by its children.

Installed by `localpachd.warm.zygote` (once, before the first fork) and filled while it preloads
a target: the target's own source and the project modules it drops again (each child imports
those afresh, see `Zygote._forget_project_modules`). Without it every forked datum compiles
them again — this environment sets PYTHONDONTWRITEBYTECODE, so there is no .pyc to load; that
was ~7 ms of CPU per iris datum.

Only the compile step is skipped: the child still imports or runs the module exactly as a fresh
interpreter does (same loader, spec, `__file__`, `__main__` via runpy, tracebacks naming the
same file). An entry is used only while the file's (mtime_ns, size) equal what was compiled, so
an edited file is always compiled afresh; the code object is what `SourceLoader.source_to_code`
makes of the same bytes (`compile(data, path, "exec", dont_inherit=True)`, the interpreter's
own optimisation level).
"""

from __future__ import annotations

import os
from importlib import machinery
from types import CodeType
from typing import Any

_CACHE: dict[str, tuple[int, int, CodeType]] = {}
_MAX_BYTES = 1 << 20  # never hold a huge generated module


def remember(path: str | None) -> None:
    """Compile one source file (`.py`) into the cache; silently skips what cannot be read."""
    if not path or not path.endswith(".py") or path in _CACHE:
        return
    try:
        before = os.stat(path)
        if before.st_size > _MAX_BYTES:
            return
        with open(path, "rb") as f:
            data = f.read()
        after = os.stat(path)
        code = compile(data, path, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError):
        return  # the child compiles it and reports the error itself, as python would
    key = (before.st_mtime_ns, before.st_size)
    if key == (after.st_mtime_ns, after.st_size):
        _CACHE[path] = (*key, code)


def lookup(path: str) -> CodeType | None:
    """The cached code of `path` if the file is still the one that was compiled."""
    entry = _CACHE.get(path)
    if entry is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if (st.st_mtime_ns, st.st_size) != entry[:2]:
        return None
    return entry[2]


def install() -> None:
    """Make SourceFileLoader.get_code consult the cache first (idempotent)."""
    cls: Any = machinery.SourceFileLoader
    if getattr(cls.get_code, "_pachsync_cached", False):
        return
    original = cls.get_code

    def get_code(self: Any, fullname: str) -> CodeType | None:
        path = getattr(self, "path", None)
        if isinstance(path, str) and self.get_filename(fullname) == path:
            code = lookup(path)
            if code is not None:
                return code
        return original(self, fullname)  # type: ignore[no-any-return]

    get_code._pachsync_cached = True  # type: ignore[attr-defined]
    cls.get_code = get_code


def size() -> int:
    return len(_CACHE)
