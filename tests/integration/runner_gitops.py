"""A tiny GitOps repo for the runner's integration tests: a bare remote plus a work clone
holding one input repo (`words`) and one shell pipeline (`upper`) — real git, no iris specs."""

from __future__ import annotations

from pathlib import Path

from helpers.gitops import GitOps

REPOS = """\
repos:
  - name: words
    description: input words
"""

PIPELINE = """\
pipeline:
  name: upper
description: {description}
transform:
  image: example.org/tools:1.0
  cmd: ["sh", "-c", "for f in /pfs/words/*; do tr a-z A-Z < $f > /pfs/out/$(basename $f); done"]
input:
  pfs:
    repo: words
    glob: /*
"""


class UpperGitOps(GitOps):
    """The runner's GitOps repo: `commit()` publishes specs/repos.yaml and the `upper` spec."""

    def commit(self, description: str, signing_key: Path | None = None,
               pipeline_text: str | None = None) -> str:
        """Write the pipeline spec, commit (signed with an ssh key if given), push; the sha."""
        text = pipeline_text or PIPELINE.format(description=description)
        return self.push({"specs/repos.yaml": REPOS, "specs/pipelines/upper.yaml": text},
                         description, signing_key)


def pipeline_info(client: object, name: str) -> tuple[str, dict[str, str]]:
    """(description, annotations) of a live pipeline, through the real python-pachyderm client."""
    info = next(iter(client.inspect_pipeline(name, details=True)))  # type: ignore[attr-defined]
    details = info.details
    return details.description, dict(details.metadata.annotations)
