#!/usr/bin/env python3
"""`make test-upstream`: python-pachyderm v7.6.0's own tests against a fresh `localpachd serve`.

The four upstream files (tests/test_pfs.py, test_pps.py, test_transaction.py, test_version.py,
with the tests/__init__.py and tests/util.py they import) are not in python-pachyderm's sdist,
so they come from a git copy of the v7.6.0 tag (`--source`: a git URL, a local clone or bare
mirror, or a directory holding tests/) into `.upstream-cache/` (git-ignored); each file is
checked against its git blob id at the tag, and a verified cache is reused without a source.
Nothing of that repository is committed, and `make test` never needs it.

The run: `localpachd serve --port 0` in a temporary data dir (its log kept in the cache dir), a
PACH_CONFIG JSON pointing at it, a loopback HTTP server standing in for the URLs the tests put
from (via the pytest plugin .ci/upstream_urls.py), then pytest with this interpreter on the four
files in one pytest process against one server (as upstream's CI runs them against one cluster).
Prints "N passed / M failed", the failing test ids and the server's traceback count; exits 1 if
a test failed or errored or none ran, 2 if the tests or the server could not be set up.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

VERSION = "7.6.0"
TAG = f"v{VERSION}"
DEFAULT_SOURCE = "https://github.com/pachyderm/python-pachyderm.git"
# git blob ids of the files at tag v7.6.0 (commit 3ac0c2e1b9bc698fa0238d8e222d69ee0841dc46)
FILES = {
    "tests/__init__.py": "8ef3fa9b5b361fb87ff0670fe312b6315e9b8bef",
    "tests/util.py": "9619fcb13199d6601e78235a389ccb6611e0054c",
    "tests/test_pfs.py": "cae62603fd827a81fe16176519ae80193528fc82",
    "tests/test_pps.py": "9ef8d2443983bd483e0e0d579102ec94761f8a08",
    "tests/test_transaction.py": "c3f916f477c326098702ee3354642c0579eb359c",
    "tests/test_version.py": "fe59a442ed2e75a9ed93e99d402659bfd19d6841",
}
TEST_FILES = tuple(p for p in FILES if Path(p).name.startswith("test_"))
HOST = "127.0.0.1"
LISTENING = re.compile(r"listening on [\w.\[\]:-]*:(\d+)")
CI_DIR = Path(__file__).resolve().parent
ROOT = CI_DIR.parent
STAND_IN = (b"<!doctype html><html><head><title>localpachd stand-in</title></head>"
            b"<body><p>Served on loopback by .ci/test_upstream.py in place of the URL a "
            b"python-pachyderm test puts from.</p></body></html>\n")  # fmt: skip


class SetupError(Exception):
    """The tests or the server could not be prepared; the message says what to do."""


@dataclass
class Outcome:
    """What one pytest run reported (from its JUnit XML)."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failures and errors
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"{len(self.passed)} passed / {len(self.failed)} failed"
        return f"{line} / {len(self.skipped)} skipped" if self.skipped else line

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.passed)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="test_upstream.py",
        description=f"Run python-pachyderm {TAG}'s own tests against localpachd.")
    parser.add_argument(
        "--source", default=os.environ.get("UPSTREAM_SOURCE") or DEFAULT_SOURCE,
        help=f"where the {TAG} tests come from when the cache lacks them: a git URL, a local "
             "clone or bare mirror holding the tag, or a directory with tests/ "
             "(default: $UPSTREAM_SOURCE, else the GitHub repository)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".upstream-cache",
                        help="cache dir for the tests, the run's config and logs")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with python-pachyderm, pytest and localpachd")
    parser.add_argument("--timeout", type=int, default=120,
                        help="per-test timeout in seconds (pytest-timeout; default 120)")
    parser.add_argument("pytest_args", nargs="*",
                        help="extra pytest arguments (e.g. -k put_file), after `--`")  # fmt: skip
    return parser.parse_args(argv)


def blob_id(data: bytes) -> str:
    """The id git gives a file with this content (`git hash-object`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def mismatches(tree: Path) -> list[str]:
    """The FILES missing under `tree` or differing from the tag's content."""
    bad = []
    for rel, want in FILES.items():
        path = tree / rel
        if not path.is_file() or blob_id(path.read_bytes()) != want:
            bad.append(rel)
    return bad


def source_kind(source: str) -> str:
    """'dir' (holds tests/), 'git-dir' (a clone or bare repo), or 'url' (cloned with git)."""
    path = Path(source)
    if path.is_dir():
        if (path / "tests").is_dir():
            return "dir"
        if (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir()):
            return "git-dir"
        raise SetupError(f"{source}: neither a directory with tests/ nor a git repository; "
                         f"give --source a clone of python-pachyderm holding tag {TAG}")
    return "url"


def _git(*args: str, cwd: Path | None = None) -> bytes:
    try:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout
    except FileNotFoundError as err:
        raise SetupError("git is not installed; it is needed to get the upstream tests") from err
    except subprocess.CalledProcessError as err:
        detail = err.stderr.decode(errors="replace").strip()
        raise SetupError(f"git {' '.join(args)} failed: {detail}") from err


def _export(git_dir: Path, dest: Path) -> None:
    for rel in FILES:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_git("--git-dir", str(git_dir), "show", f"{TAG}:{rel}"))


def fetch_tests(source: str, dest: Path) -> str:
    """Makes `dest`/tests hold the tag's files; returns where they came from."""
    if not mismatches(dest):
        return f"cache {dest}"
    kind = source_kind(source)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "tree"
        if kind == "dir":
            for rel in FILES:
                (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                if (Path(source) / rel).is_file():
                    shutil.copyfile(Path(source) / rel, staged / rel)
        else:
            git_dir = Path(source)
            if kind == "url":
                git_dir = Path(tmp) / "clone.git"
                _git("clone", "--quiet", "--bare", "--depth", "1", "--branch", TAG,
                     source, str(git_dir))  # fmt: skip
            elif (git_dir / ".git").exists():
                git_dir = git_dir / ".git"
            _export(git_dir, staged)
        bad = mismatches(staged)
        if bad:
            raise SetupError(f"{source}: {', '.join(bad)} missing or not as at tag {TAG}; "
                             f"give --source a copy of python-pachyderm {TAG}")
        if (dest / "tests").exists():
            shutil.rmtree(dest / "tests")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged / "tests", dest / "tests")
    return source


def pach_config(host: str, port: int) -> dict[str, object]:
    """python-pachyderm's config file (the `v2` format pachctl writes) for one local context."""
    return {"v2": {"active_context": "localpachd",
                   "contexts": {"localpachd": {"pachd_address": f"grpc://{host}:{port}"}}}}


def junit_test_id(classname: str, name: str) -> str:
    """pytest's node id from a JUnit `classname` (`tests.test_pfs.TestPFSFile`: dotted module,
    then the classes, which pytest collects only when named Test*) and test `name`."""
    parts = classname.split(".") if classname else []
    cut = next((i for i, part in enumerate(parts) if part.startswith("Test")), len(parts))
    module, classes = parts[:cut], parts[cut:]
    if not module:
        return "::".join([*classes, name])
    return "::".join(["/".join(module) + ".py", *classes, name])


def parse_junit(xml_text: str) -> Outcome:
    """Test ids (`file::name[param]`) by outcome from pytest's --junitxml report."""
    outcome = Outcome()
    for case in ET.fromstring(xml_text).iter("testcase"):
        test_id = junit_test_id(case.get("classname", ""), case.get("name", ""))
        children = {child.tag for child in case}
        if children & {"failure", "error"}:
            outcome.failed.append(test_id)
        elif "skipped" in children:
            outcome.skipped.append(test_id)
        else:
            outcome.passed.append(test_id)
    return outcome


def count_tracebacks(log_text: str) -> int:
    return log_text.count("Traceback (most recent call last)")


class _StandIn(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(STAND_IN)))
        self.end_headers()
        self.wfile.write(STAND_IN)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def url_stand_in() -> Iterator[str]:
    """A loopback HTTP server answering every GET with STAND_IN; yields its base URL."""
    server = http.server.ThreadingHTTPServer((HOST, 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _drain(stream: IO[str], log: IO[str]) -> None:
    for line in stream:
        log.write(line)
        log.flush()


@contextmanager
def localpachd(python: str, data_dir: Path, log_path: Path) -> Iterator[int]:
    """`localpachd serve --port 0` with its output copied to log_path; yields its port."""
    proc = subprocess.Popen(
        [python, "-m", "localpachd", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None
    with log_path.open("w") as log:
        try:
            port = None
            for line in proc.stdout:
                log.write(line)
                match = LISTENING.search(line)
                if match:
                    port = int(match.group(1))
                    break
            if port is None:
                raise SetupError(f"localpachd exited before listening (code {proc.wait()}); "
                                 f"its output is in {log_path}")
            drain = threading.Thread(target=_drain, args=(proc.stdout, log), daemon=True)
            drain.start()
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pytest_command(python: str, cache: Path, timeout: int, extra: Sequence[str]) -> list[str]:
    """pytest on the four files in one process, this project's pytest config left out."""
    return [python, "-m", "pytest", "-c", str(cache / "pytest.ini"), "--rootdir", str(cache),
            "-p", "upstream_urls", "-p", "no:cacheprovider", f"--timeout={timeout}",
            f"--junitxml={cache / 'results.xml'}", "-q", "-rfE", *extra, *TEST_FILES]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    cache: Path = args.cache.resolve()
    origin = fetch_tests(args.source, cache)
    print(f"python-pachyderm {TAG} tests from {origin}", flush=True)
    (cache / "pytest.ini").write_text("[pytest]\n")  # keeps this project's pytest config out
    log_path = cache / "localpachd.log"
    with tempfile.TemporaryDirectory(prefix="upstream-") as tmp, url_stand_in() as url_base, \
            localpachd(args.python, Path(tmp) / "data", log_path) as port:  # fmt: skip
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(pach_config(HOST, port)))
        env = {**os.environ, "PACH_CONFIG": str(config), "UPSTREAM_URL_BASE": url_base,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(CI_DIR),
                                                           os.environ.get("PYTHONPATH")]))}
        print(f"localpachd on {HOST}:{port} (log {log_path}), URLs served by {url_base}",
              flush=True)
        junit = cache / "results.xml"
        junit.unlink(missing_ok=True)
        subprocess.run(pytest_command(args.python, cache, args.timeout, args.pytest_args),
                       cwd=cache, env=env)  # fmt: skip
        if not junit.is_file():
            raise SetupError(f"pytest wrote no report ({junit}); see its output above")
        outcome = parse_junit(junit.read_text())
    tracebacks = count_tracebacks(log_path.read_text(errors="replace"))
    print(f"\npython-pachyderm {TAG} against localpachd: {outcome.summary()}")
    for test_id in outcome.failed:
        print(f"  FAILED {test_id}")
    print(f"server log: {tracebacks} traceback(s) in {log_path}")
    return 0 if outcome.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except SetupError as err:
        print(f"test-upstream: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
