"""Backs the zygote's preloaded heap with transparent huge pages, so that forking it is cheaper.

Called by `localpachd.warm.zygote` after each preload (after gc.freeze). A fork copies one page
table entry per resident 4 KiB page of anonymous memory, and the child's exit tears them down
again: for a zygote holding scikit-learn (~100 MiB of Python heap) that is ~25,000 entries per
datum, ~4 ms of kernel time on each side. `madvise(MADV_COLLAPSE)` (Linux >= 6.1) rewrites the
heap's aligned 2 MiB stretches as huge pages: one entry each. A child that then writes into one
(a reference count) gets the kernel's usual copy-on-write of a single 4 KiB page: the huge
mapping is split in the child only, the zygote's stays whole.

Measured with `python -m bench.warm_datum` (README of bench/): about a quarter less kernel time
in the zygote per fork, and faster children. Anything the kernel refuses (older kernels, THP
disabled by the administrator, non-Linux) is skipped silently: this is an optimisation only.
The zygote's VMAs keep their THP flags, so pages a child faults in later stay 4 KiB pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

MADV_COLLAPSE = 25  # linux/mman.h, Linux 6.1
_DEFAULT_SIZE = 2 << 20
_SIZE_FILE = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"


def collapsible_ranges(maps: str, huge: int = _DEFAULT_SIZE) -> list[tuple[int, int]]:
    """The huge-page-aligned parts of the private, writable, anonymous mappings (the heap and
    the interpreter's arenas) listed in a /proc/PID/maps text, as (start, end) pairs."""
    ranges: list[tuple[int, int]] = []
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        name = fields[5] if len(fields) > 5 else ""
        perms = fields[1]
        if name not in ("", "[heap]") or not perms.startswith("rw") or perms[3] != "p":
            continue
        low, _, high = fields[0].partition("-")
        start = -(-int(low, 16) // huge) * huge
        end = int(high, 16) // huge * huge
        if end > start:
            ranges.append((start, end))
    return ranges


def collapse_heap() -> int:
    """Collapse this process's anonymous memory into huge pages where the kernel agrees;
    returns the bytes collapsed (0 where unsupported). Never raises."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        madvise = _madvise()
        with open("/proc/self/maps", encoding="ascii") as f:
            maps = f.read()
        huge = _huge_page_size()
    except (OSError, AttributeError, ValueError):
        return 0
    done = 0
    for start, end in collapsible_ranges(maps, huge):
        if madvise(start, end - start, MADV_COLLAPSE) == 0:
            done += end - start
    return done


def _madvise() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _huge_page_size() -> int:
    try:
        with open(_SIZE_FILE, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return _DEFAULT_SIZE
