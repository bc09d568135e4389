"""Glob matching never backtracks: pathological globs of several shapes against 200- to
10,000-character names finish at once, for pipeline input globs (with `(...)` captures for
join_on `$1`) as for GlobFile (tests/integration/test_lpd_pfs_glob_linear.py).

A backtracking matcher takes 13 s for `*a*a*a*a*a*ab` against a 100-character name and grows
exponentially; the run here is in a subprocess under a timeout that such a matcher exceeds by
orders of magnitude (it holds the GIL, so nothing in-process could interrupt it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from localpachd import globs
from localpachd.errors import InvalidArgument

LENGTHS = (200, 1000, 10_000)

# (glob under /n/, does it match "a"*(n-1) + "b", length of $1 on that name or None)
SHAPES: list[tuple[str, int | None]] = [
    ("*a*a*a*a*a*ab", None),
    ("**a**a**a**a**ab", None),
    ("{a,a}" * 30 + "*b", None),
    ("[a]*" * 20 + "b", None),
    ("{a*,{a*,{a*,a*}}}" * 5 + "b", None),
    ("(*a)(*a)(*a)(*a)(*a)b", -4),  # greedy leftmost-first: $1 takes all but four a's
    ("({a,a}*)" * 12 + "b", -11),
    ("(**)(**)(**)(**)x", None),  # never matches ("x" absent)
]

SCRIPT = textwrap.dedent("""
    import json, sys
    from localpachd import datums
    shapes, lengths = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    out = []
    for n in lengths:
        names = ["/n/" + "a" * n, "/n/" + "a" * (n - 1) + "b"]
        src = datums.InputSource("c", tuple(datums.RepoFile(p, "h" + p[-1], 1) for p in names))
        for glob, _ in shapes:
            found = datums.glob_matches({"repo": "r", "glob": "/n/" + glob, "join_on": "$1"}, src)
            out.append([n, glob, [[d.path, d.join_on] for d in found]])
    print(json.dumps(out))
""")


def test_pathological_globs_match_in_linear_time() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(SHAPES), json.dumps(LENGTHS)],
        capture_output=True, text=True, timeout=300)  # today's code: well under a second
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(SHAPES) * len(LENGTHS)
    expected = dict(SHAPES)
    for n, glob, found in results:
        ends_in_b = "/n/" + "a" * (n - 1) + "b"
        if glob.endswith("x"):
            assert found == [], glob
            continue
        assert [p for p, _ in found] == [ends_in_b], (n, glob)
        key_len = expected[glob]
        assert found[0][1] == ("a" * (n - 1 + key_len) if key_len is not None else ""), glob


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_glob_file_shapes_on_huge_names(n: int) -> None:
    """The compiled matcher itself (what GlobFile uses), no subprocess: linear time means
    even 100,000-character names answer at once."""
    name = "/n/" + "a" * n
    for glob, _ in SHAPES:
        g = globs.compile_glob(globs.clean_glob("/n/" + glob))
        assert not g.matches(name)
        assert g.matches(name[:-1] + "b") is (not glob.endswith("x"))


@pytest.mark.parametrize("glob", [
    "/" + "a" * (globs.MAX_GLOB + 1),
    "/" + "(*)" * (globs.MAX_GROUPS + 1),
])
def test_globs_beyond_the_limits_are_refused(glob: str) -> None:
    with pytest.raises(InvalidArgument, match="glob"):
        globs.compile_glob(globs.clean_glob(glob))
