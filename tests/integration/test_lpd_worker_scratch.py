"""The worker's scratch tree: inputs laid out as copies, and removed without following links.

Real files in tmp_path. A datum must never be able to change a stored blob (inputs are copies,
not links) and removing its scratch tree must never delete anything outside it.
"""

from __future__ import annotations

import os
from pathlib import Path

from localpachd.datums import Datum, DatumInput, RepoFile
from localpachd.worker import copy_file, layout, remove_tree


def _datum(blobs: dict[str, bytes]) -> Datum:
    files = tuple(RepoFile(path, path, len(data)) for path, data in blobs.items())
    inp = DatumInput(name="in", project="default", repo="r", branch="master", commit="c" * 32,
                     path="/", hash="h", files=files)  # fmt: skip
    return Datum((inp,))


def test_layout_copies_every_input_file_into_its_directory(tmp_path: Path) -> None:
    contents = {"/a.txt": b"A", "/d/e/f.bin": os.urandom(300_000), "/d/g.txt": b"", "/d/h": b"h"}
    store = tmp_path / "blobs"
    store.mkdir()
    for i, data in enumerate(contents.values()):
        (store / str(i)).write_bytes(data)
    where = {path: str(store / str(i)) for i, path in enumerate(contents)}

    pfs = layout(_datum(contents), tmp_path / "scratch" / "datum",
                 lambda f, dest: copy_file(where[f.path], dest))
    got = {"/" + p.relative_to(pfs / "in").as_posix(): p.read_bytes()
           for p in (pfs / "in").rglob("*") if p.is_file()}
    assert got == contents
    assert (pfs / "out").is_dir() and not any((pfs / "out").iterdir())
    copy = pfs / "in" / "a.txt"
    assert os.stat(copy).st_ino != os.stat(where["/a.txt"]).st_ino  # a copy, never a link
    copy.write_bytes(b"changed by the datum")
    assert (store / "0").read_bytes() == b"A"

    again = layout(_datum({"/a.txt": b"A"}), tmp_path / "scratch" / "datum",
                   lambda f, dest: copy_file(where[f.path], dest))  # a retry starts clean
    assert sorted(p.name for p in (again / "in").iterdir()) == ["a.txt"]


def test_remove_tree_never_follows_links_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("keep")
    root = tmp_path / "scratch"
    (root / "pfs" / "out" / "deep").mkdir(parents=True)
    (root / "pfs" / "out" / "deep" / "x").write_text("x")
    (root / "pfs" / "out" / "dirlink").symlink_to(outside)
    (root / "pfs" / "out" / "filelink").symlink_to(outside / "keep.txt")
    os.chmod(root / "pfs" / "out" / "deep", 0o500)  # the datum made a directory read-only

    remove_tree(root)
    assert not root.exists()
    assert (outside / "keep.txt").read_text() == "keep" and (outside / "sub").is_dir()
    remove_tree(root)  # already gone: nothing to do, no error


def _tree(root: Path) -> list[str]:
    return sorted(("d " if p.is_dir() and not p.is_symlink() else "f ") + p.relative_to(root)
                  .as_posix() for p in root.rglob("*"))  # fmt: skip


def test_a_reused_slot_holds_exactly_the_next_datums_tree(tmp_path: Path) -> None:
    """A worker slot keeps the directories both datums need (emptied, mode reset) and removes
    everything else the first datum had or left: the second sees what a fresh tree shows."""
    store = tmp_path / "blobs"
    store.mkdir()
    (store / "blob").write_bytes(b"data")
    slot, fresh = tmp_path / "slot", tmp_path / "fresh"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    put = lambda f, dest: copy_file(str(store / "blob"), dest)  # noqa: E731
    first = layout(_datum({"/x/1.txt": b"", "/y/z/2.txt": b""}), slot, put)
    # what a datum may leave behind: outputs, files in its cwd, new directories, odd modes,
    # a link out of the tree where a kept directory was, a file where a directory will be
    (first / "out" / "model.pkl").write_bytes(b"m")
    (slot / "note.txt").write_text("cwd file")
    (first / "out" / "deep" / "er").mkdir(parents=True)
    os.chmod(first / "in" / "x", 0o500)
    os.chmod(first / "out", 0o700)
    (first / "in" / "y" / "z" / "2.txt").unlink()
    (first / "in" / "y" / "link").symlink_to(outside)
    (first / "in" / "w").write_text("not a directory")

    second_datum = _datum({"/x/3.txt": b"", "/w/4.txt": b""})
    second = layout(second_datum, slot, put)
    layout(second_datum, fresh, put)
    assert _tree(slot) == _tree(fresh) == [
        "d pfs", "d pfs/in", "d pfs/in/w", "d pfs/in/x", "d pfs/out",
        "f pfs/in/w/4.txt", "f pfs/in/x/3.txt",
    ]  # fmt: skip
    for d in ("in", "in/x", "out"):
        assert os.stat(second / d).st_mode == os.stat(fresh / "pfs" / d).st_mode
    assert (outside / "keep.txt").read_text() == "keep"  # links are never followed


def test_a_slot_that_became_a_link_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    slot = tmp_path / "slot"
    slot.symlink_to(outside)  # a datum replaced its own working directory by a link
    (tmp_path / "blob").write_bytes(b"data")
    pfs = layout(_datum({"/a": b""}), slot,
                 lambda f, dest: copy_file(str(tmp_path / "blob"), dest))  # fmt: skip
    assert not slot.is_symlink() and (pfs / "in" / "a").read_bytes() == b"data"
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
