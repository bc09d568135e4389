"""Image reference policy: every pipeline image must name an explicit, immutable version.

Pachyderm pulls images with `IfNotPresent`, so a reused tag (e.g. `latest`) is never re-pulled
and different workers may run different code. Used by `agent.specs.schema` (to explain pattern
errors) and `agent.specs.semantic` (the mutable-tag check). Pure functions, no I/O.
"""

from __future__ import annotations

import re

# Tags that by convention move to new builds. `latest` is also forbidden by the JSON Schema.
MUTABLE_TAGS = frozenset({"latest", "main", "master", "head", "stable", "edge", "nightly", "dev"})
_DIGEST = re.compile(r"@sha256:[a-f0-9]{64}\Z")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
HINT = (
    "pin an immutable tag such as the git sha CI builds, e.g. `pachsync bump-image <image> <sha>`"
)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """ "reg:5000/a/b:1.0@sha256:..." -> ("reg:5000/a/b", "1.0", "sha256:...")."""
    digest = None
    match = _DIGEST.search(image)
    if match:
        digest = match.group(0)[1:]
        image = image[: match.start()]
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :], digest
    return image, None, digest


def image_problem(image: str) -> tuple[str, str]:
    """(problem, hint) for an image reference the policy rejects; ("", "") if it is fine."""
    if not image or any(c.isspace() for c in image):
        return "image is empty or contains whitespace", HINT
    name, tag, digest = split_image(image)
    if tag is None and digest is None:
        return f"image {image!r} has no tag; Pachyderm would run whatever `latest` is", HINT
    if tag is not None and tag.lower() in MUTABLE_TAGS:
        return f"image {image!r} uses the mutable tag '{tag}'", HINT
    if tag is not None and not _TAG.fullmatch(tag):
        return f"image {image!r} has an invalid tag '{tag}'", HINT
    if not name or name != name.lower() or name.endswith("/") or "//" in name:
        return f"image {image!r} has an invalid repository name {name!r}", (
            "image names are lower case: <registry>/<path>/<name>:<tag>"
        )
    return "", ""
