#!/usr/bin/env python3
"""Say, in the build log and as a warning on the run, that a fork's PR gets no `pachsync plan`.

Called by azure-pipelines.yml (job PlanSkipped), which runs only for pull requests from forks
(`System.PullRequest.IsFork`). Such builds never receive the cluster address or token: the
code of a fork's PR runs in the build, and anything it can read it can send elsewhere. The
specs were still validated (job Tests). Standard library only; prints constant text, nothing
taken from the pull request.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

MESSAGE = ("pachsync plan skipped: this pull request comes from a fork, and fork builds get no "
           "cluster credentials. The specs were validated (job Tests). To see the plan, a "
           "maintainer can push the branch to this repository and open the PR from there.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print(MESSAGE)
    print(f"##vso[task.logissue type=warning]{MESSAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
