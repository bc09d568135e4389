"""`pachsync bump-image`: point every spec that runs IMAGE at a new tag, commit it and push it.

Called by `agent.commands.bump_image` (CI on main, after the stage image was pushed). The text
rewrite is pure and line-based: on each `image:` line whose repository equals IMAGE only the tag
or digest changes, so comments, quoting, key order and every other byte stay as the author wrote
them. The result is re-parsed and compared with the original to prove that nothing but those
image fields changed. Git work (commit, push with replay on a lost race) lives in
`agent.source.push`; this module decides *what* to write, that one *how* to publish it.

The specs come from pull requests, so they are read and rewritten only as regular files inside
the specs folder, never through a link (`agent.specs.safefs`): a link merged under specs/ is
refused, and a file is replaced by renaming a new one over it, so even a link swapped in
between reading and writing is never written through.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import PachsyncError, UsageError
from agent.source.push import (
    Author,
    commit_paths,
    current_branch,
    default_author,
    dirty_paths,
    is_ancestor,
    push_with_retry,
    repo_root,
)
from agent.specs.safefs import Unreadable, open_tree
from agent.specs.safefs import spec_files as find_spec_files

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
# A docker tag (distribution/reference grammar) and a content digest.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*[A-Za-z0-9]$|^[A-Za-z0-9]$")
MUTABLE_TAGS = frozenset({"latest", "stable", "main", "master", "edge"})
# One `image:` line, block or flow-key style, optionally a list item, value quoted or not,
# optional trailing comma (JSON) and comment. The groups around `ref` are written back verbatim.
_IMAGE_LINE = re.compile(
    r"""^(?P<head>[ \t]*(?:-[ \t]+)?(?P<kq>["']?)image(?P=kq)[ \t]*:[ \t]*(?P<q>["']?))"""
    r"""(?P<ref>[^\s"'#,{}\[\]]+)(?P<tail>(?P=q)[ \t]*,?[ \t]*(?:#.*)?)$"""
)


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class LineChange:
    line: int  # 1-based
    old: str
    new: str


@dataclass(frozen=True)
class SpecFile:
    """A spec file, reached from a trusted folder (`anchor`: the specs folder's parent) through
    `parts` (the specs folder, the folders below it, the file name) without following links."""

    anchor: str
    parts: tuple[str, ...]

    @property
    def path(self) -> Path:
        return Path(self.anchor, *self.parts)


@dataclass(frozen=True)
class FileChange:
    file: str  # as shown to the user (relative to the spec root's parent when possible)
    spec: SpecFile
    changes: tuple[LineChange, ...]
    new_text: str = field(repr=False)

    @property
    def path(self) -> Path:
        return self.spec.path


@dataclass(frozen=True)
class BumpPlan:
    image: str
    new_ref: str
    files: tuple[FileChange, ...]  # files that change
    current: tuple[tuple[str, int, str], ...]  # every (file, line, ref) naming IMAGE, before


def parse_image_ref(ref: str) -> ImageRef:
    """Split `host/path:tag@sha256:...` into repository, tag and digest."""
    name, _, digest = ref.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return ImageRef(name[:colon], name[colon + 1 :] or None, digest or None)
    return ImageRef(name, None, digest or None)


def check_image(image: str) -> str:
    """IMAGE must be a bare repository: no tag, no digest."""
    parsed = parse_image_ref(image)
    if not _REPOSITORY.match(image) or parsed.tag or parsed.digest:
        raise UsageError(
            f"IMAGE must be a repository without tag or digest, got {image!r}",
            hint="e.g. pachsync bump-image myregistry.azurecr.io/iris-stages 3f2c1ab",
        )
    return image


def new_reference(image: str, tag: str) -> str:
    """`IMAGE:TAG`, or `IMAGE@DIGEST` when TAG is a digest; refuses mutable or malformed tags."""
    version = tag.strip().lstrip("@") if tag.strip().startswith("@") else tag.strip()
    if not version:
        raise UsageError("TAG is empty", hint="pass an immutable tag such as the commit sha")
    if version.lower() in MUTABLE_TAGS:
        raise UsageError(
            f"refusing the mutable tag {version!r}: the agent could never tell two builds apart",
            hint="tag images with the commit sha, e.g. $(Build.SourceVersion)",
        )
    if _DIGEST.match(version):
        return f"{image}@{version}"
    if not _TAG.match(version):
        raise UsageError(f"{tag!r} is neither a docker tag nor a digest (sha256:<hex>)")
    return f"{image}:{version}"


def rewrite_text(text: str, image: str, new_ref: str) -> tuple[str, tuple[LineChange, ...]]:
    """Rewrite the matching `image:` lines of one file. Pure; every other byte is kept."""
    out: list[str] = []
    changes: list[LineChange] = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        match = _IMAGE_LINE.match(body)
        if match and parse_image_ref(match["ref"]).repository == image and match["ref"] != new_ref:
            body = match["head"] + new_ref + match["tail"]
            changes.append(LineChange(number, match["ref"], new_ref))
        out.append(body + ending)
    return "".join(out), tuple(changes)


def image_values(node: Any) -> Iterator[str]:
    """Every string value of a key named `image`, anywhere in a parsed document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from image_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from image_values(item)


def _replaced(node: Any, image: str, new_ref: str) -> Any:
    if isinstance(node, dict):
        return {
            k: (new_ref if k == "image" and isinstance(v, str)
                and parse_image_ref(v).repository == image else _replaced(v, image, new_ref))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_replaced(item, image, new_ref) for item in node]
    return node


def _load_all(text: str, file: str) -> list[Any]:
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise PachsyncError(
            f"{file}:{line}: does not parse as YAML: {exc}",
            hint="fix the spec first (pachsync validate); bump-image only rewrites valid specs",
        ) from exc


def verify_rewrite(old: str, new: str, image: str, new_ref: str, file: str,
                   changes: tuple[LineChange, ...]) -> None:
    """Prove the rewrite: only the changed lines differ, and re-parsed, the documents equal the
    originals with exactly the IMAGE fields replaced, and no IMAGE field was left behind."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    touched = {c.line for c in changes}
    differing = {i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), 1) if a != b}
    if len(old_lines) != len(new_lines) or differing != touched:
        raise PachsyncError(f"{file}: internal error: the rewrite touched lines it should not have")
    after = _load_all(new, file)
    left = [ref for ref in image_values(after)
            if parse_image_ref(ref).repository == image and ref != new_ref]
    if left:
        raise PachsyncError(
            f"{file}: {image} is also named in a form bump-image does not rewrite ({left[0]})",
            hint="put the image on its own `image: REF` line (block style), then run again",
        )
    if [_replaced(doc, image, new_ref) for doc in _load_all(old, file)] != after:
        raise PachsyncError(
            f"{file}: after the rewrite the spec differs in more than its {image} image fields",
            hint="report this as a bug; nothing was written",
        )


def spec_files(specs_dir: Path) -> list[SpecFile]:
    """Every spec file under specs_dir, sorted; a link or special file there is refused."""
    anchor, parts = _specs_folder(specs_dir)
    try:
        with open_tree(anchor, parts, "") as folder:
            found = find_spec_files(folder, SPEC_SUFFIXES)
    except FileNotFoundError:
        raise UsageError(f"spec directory {specs_dir} does not exist",
                         hint="pass --specs DIR") from None
    except Unreadable as exc:
        raise _refused(exc) from None
    return [SpecFile(anchor, parts + rest) for rest in found]


def _specs_folder(specs_dir: Path) -> tuple[str, tuple[str, ...]]:
    """(trusted anchor, parts): the folder holding specs_dir, and specs_dir's own name (so the
    specs folder itself is opened without following a link)."""
    target = os.path.abspath(specs_dir)
    anchor, name = os.path.split(target)
    return (anchor, (name,)) if name else (target, ())


def read_spec(spec: SpecFile) -> str:
    """The text of one spec file, read as `agent.specs` reads specs (bytes as they are: a
    `\r\n` file stays one)."""
    try:
        with open_tree(spec.anchor, spec.parts[:-1], "") as folder:
            text = folder.read_text(spec.parts[-1])
    except (Unreadable, FileNotFoundError) as exc:
        raise _refused(exc) from None
    if text is None:
        raise PachsyncError(f"{'/'.join(spec.parts)}: disappeared while bump-image ran",
                            hint="run again on a checkout nobody else is changing")
    return text


def _refused(exc: Unreadable | FileNotFoundError) -> PachsyncError:
    if isinstance(exc, FileNotFoundError):
        return PachsyncError(f"{exc.filename}: disappeared while bump-image ran",
                             hint="run again on a checkout nobody else is changing")
    return PachsyncError(f"{exc.where}: {exc.message}", hint=exc.hint)


def plan_bump(specs_dir: Path, image: str, tag: str, display_root: Path | None = None) -> BumpPlan:
    """Read every spec under specs_dir and compute (and verify) the rewritten texts. No writes."""
    check_image(image)
    new_ref = new_reference(image, tag)
    base = display_root or specs_dir.parent
    files: list[FileChange] = []
    current: list[tuple[str, int, str]] = []
    for spec in spec_files(specs_dir):
        shown = _shown(spec.path, base)
        text = read_spec(spec)
        for number, line in enumerate(text.splitlines(), start=1):
            match = _IMAGE_LINE.match(line)
            if match and parse_image_ref(match["ref"]).repository == image:
                current.append((shown, number, match["ref"]))
        new_text, changes = rewrite_text(text, image, new_ref)
        if changes or image in text:
            verify_rewrite(text, new_text, image, new_ref, shown, changes)
        if changes:
            files.append(FileChange(shown, spec, changes, new_text))
    return BumpPlan(image, new_ref, tuple(files), tuple(current))


def _shown(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def write_bump(plan: BumpPlan) -> None:
    """Write each rewritten file in place of the old one (never through a link)."""
    for change in plan.files:
        spec = change.spec
        try:
            with open_tree(spec.anchor, spec.parts[:-1], "") as folder:
                folder.replace_text(spec.parts[-1], change.new_text)
        except (Unreadable, FileNotFoundError) as exc:
            raise _refused(exc) from None


def images_named(specs_dir: Path) -> list[str]:
    """Distinct repositories on `image:` lines under specs_dir (for a helpful error)."""
    found: set[str] = set()
    for spec in spec_files(specs_dir):
        for line in read_spec(spec).splitlines():
            match = _IMAGE_LINE.match(line)
            if match:
                found.add(parse_image_ref(match["ref"]).repository)
    return sorted(found)


# --- orchestration: rewrite, then optionally commit and push through agent.source.push ---------


@dataclass(frozen=True)
class BumpOptions:
    specs_dir: Path
    image: str
    tag: str
    commit: bool = False
    push: bool = False  # implies commit
    remote: str = "origin"
    branch: str | None = None  # default: the checked-out branch
    retries: int = 5
    backoff_s: float = 1.0
    author: Author | None = None  # default: env, then git config (agent.source.push.default_author)
    author_name: str | None = None  # with `author` None: these win over the defaults, per field
    author_email: str | None = None
    allow_older: bool = False  # write TAG even when the specs already name a newer commit
    dry_run: bool = False  # compute and verify, write nothing (no commit, no push)


@dataclass(frozen=True)
class BumpOutcome:
    plan: BumpPlan
    status: str  # "changed" | "unchanged" | "superseded" | "would-change" (dry run)
    commit: str | None = None  # the bump commit (after --push: the one now on the remote)
    pushed: bool = False
    attempts: int = 0
    replays: int = 0
    remote: str | None = None
    branch: str | None = None
    note: str = ""


def commit_message(image: str, tag: str) -> str:
    return f"Bump {image} to {tag.strip().lstrip('@')} [skip ci]"


def superseded_by(root: Path, plan: BumpPlan, tag: str) -> str | None:
    """A ref in the specs whose tag is a commit that descends from TAG: bumping would roll back.

    CI tags images with the commit sha, so when two builds race, the older one must not
    overwrite the newer one's bump. Tags that are not commits of this repo never match.
    """
    for _file, _line, ref in plan.current:
        current = parse_image_ref(ref).tag
        if current and re.fullmatch(r"[0-9a-f]{7,40}", current) and is_ancestor(root, tag, current):
            return ref
    return None


def run_bump(opts: BumpOptions) -> BumpOutcome:
    """Rewrite the specs, then commit and push as asked. Raises agent.errors types."""
    plan = plan_bump(opts.specs_dir, opts.image, opts.tag)
    if not plan.current:
        found = ", ".join(images_named(opts.specs_dir)) or "none"
        raise UsageError(
            f"no `image:` line under {opts.specs_dir} names {opts.image}",
            hint=f"images named there: {found}",
        )
    committing = (opts.commit or opts.push) and not opts.dry_run
    root = repo_root(opts.specs_dir) if committing else None
    newer = None if root is None or opts.allow_older else superseded_by(root, plan, opts.tag)
    if newer:
        return BumpOutcome(plan, "superseded", note=f"the specs already run {newer} (newer commit)")
    if not plan.files:
        return BumpOutcome(plan, "unchanged", note=f"every spec already runs {plan.new_ref}")
    if opts.dry_run:
        return BumpOutcome(plan, "would-change", note="dry run: nothing written")
    if root is None:
        write_bump(plan)
        return BumpOutcome(plan, "changed")
    return _commit_and_push(opts, plan, root)


def _commit_and_push(opts: BumpOptions, plan: BumpPlan, root: Path) -> BumpOutcome:
    paths = [_shown(f.path, root) for f in plan.files]
    if dirty := dirty_paths(root, paths):
        raise UsageError(
            f"uncommitted changes in {', '.join(dirty)}",
            hint="commit or discard them first: bump-image commits only its own rewrite",
        )
    branch = opts.branch or (current_branch(root) if opts.push else None)
    if opts.push and not branch:
        raise UsageError(
            "HEAD is detached, so the branch to push to is unknown",
            hint="pass --branch (Azure Pipelines: --branch $(Build.SourceBranchName))",
        )
    author = opts.author or default_author(root, opts.author_name, opts.author_email)
    message = commit_message(opts.image, opts.tag)
    write_bump(plan)
    sha = commit_paths(root, paths, message, author)
    if not opts.push:
        return BumpOutcome(plan, "changed", commit=sha)
    assert branch is not None
    replay = _Replay(opts, root, plan)
    result = push_with_retry(root, opts.remote, branch, replay, message, author,
                             retries=opts.retries, backoff_s=opts.backoff_s)
    status, note = ("changed", "") if result.pushed else replay.notes[-1]
    return BumpOutcome(replay.plans[-1], status, result.commit, result.pushed, result.attempts,
                       result.replays, opts.remote, branch, note)


class _Replay:
    """The `redo` callback of push_with_retry: after the bump was moved onto the new remote
    head, rewrite again there. Remembers each plan (the last one is what got pushed) and why
    nothing was left to push, if so."""

    def __init__(self, opts: BumpOptions, root: Path, first: BumpPlan) -> None:
        self.opts, self.root = opts, root
        self.plans = [first]
        self.notes: list[tuple[str, str]] = []  # (status, note)

    def __call__(self) -> list[str]:
        opts = self.opts
        again = plan_bump(opts.specs_dir, opts.image, opts.tag)
        newer = None if opts.allow_older else superseded_by(self.root, again, opts.tag)
        if newer:
            self.notes.append(("superseded", f"the remote meanwhile runs {newer} (newer commit)"))
            return []
        if not again.files:
            self.notes.append(("unchanged", f"the remote meanwhile runs {again.new_ref} already"))
            return []
        write_bump(again)
        self.plans.append(again)
        return [_shown(f.path, self.root) for f in again.files]
