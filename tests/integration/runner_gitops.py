"""A tiny GitOps repo for the runner's integration tests: a bare remote plus a work clone
holding one input repo (`words`) and one shell pipeline (`upper`) — real git, no iris specs."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

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


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


class GitOps:
    """`remote` is what the agent follows (branch main); `push()` publishes the work clone."""

    def __init__(self, root: Path) -> None:
        self.remote = root / "remote.git"
        self.work = root / "work"
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        git(root, "init", "-q", "-b", "main", str(self.work))
        for key, value in (("user.email", "ops@example.com"), ("user.name", "Ops"),
                           ("commit.gpgsign", "false")):
            git(self.work, "config", key, value)
        git(self.work, "remote", "add", "origin", str(self.remote))
        (self.work / "specs" / "pipelines").mkdir(parents=True)
        (self.work / "specs" / "repos.yaml").write_text(REPOS)

    def commit(self, description: str, signing_key: Path | None = None,
               pipeline_text: str | None = None) -> str:
        """Write the pipeline spec, commit (signed with an ssh key if given), push; the sha."""
        text = pipeline_text or PIPELINE.format(description=description)
        (self.work / "specs" / "pipelines" / "upper.yaml").write_text(text)
        git(self.work, "add", "-A")
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={signing_key}"] \
            if signing_key else []
        git(self.work, *sign, "commit", "-q", *(["-S"] if signing_key else []),
            "-m", description)
        git(self.work, "push", "-q", "origin", "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")


def pipeline_info(client: object, name: str) -> tuple[str, dict[str, str]]:
    """(description, annotations) of a live pipeline, through the real python-pachyderm client."""
    info = next(iter(client.inspect_pipeline(name, details=True)))  # type: ignore[attr-defined]
    details = info.details
    return details.description, dict(details.metadata.annotations)


class LocalPachdProcess:
    """`python -m localpachd serve` as a real subprocess that can be stopped and restarted on
    the same port and data dir (the first start picks a free port)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localpachd", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:  # pytest's timeout guards a server that never comes up
            seen.append(line)
            match = re.search(r"listening on [\w.\[\]:-]*:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        else:
            raise AssertionError(f"localpachd did not start: {''.join(seen)}")
        # Keep draining its output so a chatty server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
