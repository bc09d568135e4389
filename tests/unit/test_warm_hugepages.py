"""The zygote's huge-page pass picks exactly the aligned parts of private anonymous memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from localpachd.warm.hugepages import collapse_heap, collapsible_ranges

MiB = 1 << 20
MAPS = f"""\
{0x55A000000000:x}-{0x55A000000000 + 9 * MiB:x} rw-p 00000000 00:00 0          [heap]
{0x7F0000100000:x}-{0x7F0000700000:x} rw-p 00000000 00:00 0
{0x7F0000800000:x}-{0x7F0000900000:x} rw-p 00000000 00:00 0
{0x7F0001000000:x}-{0x7F0001400000:x} r--p 00000000 00:00 0
{0x7F0002000000:x}-{0x7F0002400000:x} rw-s 00000000 00:05 7     /dev/zero (deleted)
{0x7F0003000000:x}-{0x7F0003400000:x} rw-p 00001000 08:01 42    /usr/lib/libfoo.so
{0x7FFC00000000:x}-{0x7FFC00800000:x} rw-p 00000000 00:00 0          [stack]
"""


def test_only_aligned_private_writable_anonymous_stretches() -> None:
    assert collapsible_ranges(MAPS, 2 * MiB) == [
        (0x55A000000000, 0x55A000000000 + 8 * MiB),  # the heap, its last odd MiB left out
        (0x7F0000200000, 0x7F0000600000),  # an arena run: 1..7 MiB -> 2..6 MiB
    ]  # too small, read-only, shared, file-backed and the stack are all skipped


def _thp_mode() -> str | None:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text.split("[", 1)[1].split("]", 1)[0]


def test_collapsing_this_process_backs_a_touched_buffer_with_huge_pages() -> None:
    if _thp_mode() in (None, "never"):
        pytest.skip("transparent huge pages are unavailable on this machine")
    buffer = bytearray(16 * MiB)  # malloc'd with mmap: private anonymous memory
    for i in range(0, len(buffer), 4096):
        buffer[i] = 1  # resident, so there is something to collapse
    done = collapse_heap()
    assert done >= 2 * MiB and done % (2 * MiB) == 0
    rollup = Path("/proc/self/smaps_rollup").read_text()
    huge_kib = int(rollup.split("AnonHugePages:", 1)[1].split()[0])
    assert huge_kib >= 2048
