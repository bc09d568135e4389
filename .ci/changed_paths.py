#!/usr/bin/env python3
"""Which images a push changes: sets the Azure Pipelines output variables `stages` and `agent`.

Called by azure-pipelines.yml (job Images, step `changes`) as
`python3 .ci/changed_paths.py --base HEAD^1 --head HEAD`. Standard library only: it runs before
the project is installed. An image is rebuilt when a file it is built from changed (the lists
below mirror the Dockerfile's COPY sources; tests/unit/test_delivery_azure_pipelines.py checks
that). When the base commit is unknown (first commit, shallow clone) or the run was started by
hand, both images are rebuilt: building too much is safe, skipping a build is not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence

COMMON = ("Dockerfile", ".dockerignore")
IMAGES = {
    "stages": ("stages/", "requirements/stages.txt", *COMMON),
    "agent": ("agent/", "schemas/", "requirements/agent.txt", *COMMON),
}


def changed_files(base: str, head: str) -> list[str] | None:
    """Paths changed between base and head, or None when git cannot tell."""
    try:
        out = subprocess.run(["git", "diff", "--name-only", base, head], check=True,
                             capture_output=True, text=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return [line for line in out.stdout.splitlines() if line]


def affected(files: Iterable[str] | None) -> dict[str, bool]:
    """For each image: does any changed file belong to what it is built from?"""
    if files is None:
        return {image: True for image in IMAGES}
    paths = list(files)
    return {
        image: any(p == prefix or (prefix.endswith("/") and p.startswith(prefix))
                   for p in paths for prefix in prefixes)
        for image, prefixes in IMAGES.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD^1", help="commit before the push")
    parser.add_argument("--head", default="HEAD", help="commit being built")
    parser.add_argument("--all", action="store_true", help="rebuild every image")
    args = parser.parse_args(argv)
    manual = os.environ.get("BUILD_REASON") == "Manual"
    files = None if args.all or manual else changed_files(args.base, args.head)
    result = affected(files)
    why = "all images (manual run, --all, or unknown base)" if files is None else \
        f"{len(files)} changed file(s)"
    print(f"changed_paths: {why}")
    for image, changed in result.items():
        print(f"  {image}: {'rebuild' if changed else 'unchanged'}")
        print(f"##vso[task.setvariable variable={image};isOutput=true]{str(changed).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
