"""The pure parts of `make test-upstream` (.ci/test_upstream.py and its pytest plugin
.ci/upstream_urls.py): argument parsing, the PACH_CONFIG it writes (parsed by python-pachyderm's
own config loader), git blob ids (checked against real `git hash-object`), getting the tests from
a directory or a git repository (real git, no network) and refusing a wrong copy, JUnit result
parsing, and the URL rewrite onto the loopback stand-in (checked on python-pachyderm's real
request builder and against the stand-in HTTP server)."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


up = _load("test_upstream")
urls = _load("upstream_urls")


def test_args_default_to_the_github_tag_and_the_cache_and_pass_pytest_args_through(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("UPSTREAM_SOURCE", raising=False)
    args = up.parse_args([])
    assert args.source == up.DEFAULT_SOURCE and args.cache == ROOT / ".upstream-cache"
    assert args.python == sys.executable and args.timeout == 120 and args.pytest_args == []
    args = up.parse_args(["--source", "/m", "--timeout", "5", "--", "-k", "put_file"])
    assert (args.source, args.timeout, args.pytest_args) == ("/m", 5, ["-k", "put_file"])
    monkeypatch.setenv("UPSTREAM_SOURCE", "/from-env")
    assert up.parse_args([]).source == "/from-env"


@pytest.mark.parametrize("port", [1, 30650, 65535])
def test_pach_config_is_read_by_python_pachyderms_loader(port: int) -> None:
    import python_pachyderm

    config = json.loads(json.dumps(up.pach_config("127.0.0.1", port)))
    host, got_port, _, token, certs, txn, tls = python_pachyderm.Client._parse_config(config)
    assert (host, got_port, token, certs, txn, tls) == ("127.0.0.1", port, None, None, None, False)
    client = python_pachyderm.Client.new_from_config(io.StringIO(json.dumps(config)))
    assert client.address == f"127.0.0.1:{port}"  # the channel is lazy: nothing is dialled


@pytest.mark.parametrize("data", [b"", b"x", b"line\n" * 1000, bytes(range(256))])
def test_blob_id_is_gits(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    want = subprocess.run(["git", "hash-object", str(path)], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert up.blob_id(data) == want


def _fake_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Stands FILES in for a small tree, so the tests need no copy of python-pachyderm."""
    content = {rel: f"# {rel}\n".encode() for rel in up.FILES}
    monkeypatch.setattr(up, "FILES", {rel: up.blob_id(data) for rel, data in content.items()})
    return content


def _write(tree: Path, content: dict[str, bytes]) -> None:
    for rel, data in content.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)  # fmt: skip


def test_tests_come_from_a_directory_a_clone_or_a_bare_mirror_and_are_then_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    content = _fake_files(monkeypatch)
    plain = tmp_path / "plain"
    _write(plain, content)
    assert up.fetch_tests(str(plain), tmp_path / "c1") == str(plain)
    assert up.mismatches(tmp_path / "c1") == []
    assert up.fetch_tests("/nowhere-needed", tmp_path / "c1").startswith("cache ")

    clone = tmp_path / "clone"
    clone.mkdir()
    _git(clone, "init", "-q")
    _write(clone, content)
    (clone / "tests" / "util.py").write_bytes(b"changed after the tag\n")
    _git(clone, "add", ".")
    _git(clone, "commit", "-qm", "x")
    (clone / "tests" / "util.py").write_bytes(content["tests/util.py"])
    _git(clone, "commit", "-qam", "y")
    _git(clone, "tag", up.TAG)
    (clone / "tests" / "util.py").write_bytes(b"changed after the tag\n")
    _git(clone, "commit", "-qam", "after the tag")
    (clone / "tests").rename(tmp_path / "moved")  # not a plain dir: read through git
    for source in (clone, tmp_path / "bare.git"):
        if source.name == "bare.git":
            _git(tmp_path, "clone", "-q", "--bare", str(clone), str(source))
        dest = tmp_path / f"cache-{source.name}"
        assert up.fetch_tests(str(source), dest) == str(source)
        assert up.mismatches(dest) == [], source  # the tag's files, not the branch head's


def test_a_wrong_or_missing_copy_is_refused_with_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    content = _fake_files(monkeypatch)
    wrong = tmp_path / "wrong"
    _write(wrong, {**content, "tests/test_pps.py": b"edited\n"})
    (wrong / "tests" / "util.py").unlink()
    with pytest.raises(up.SetupError, match=r"tests/util.py, tests/test_pps.py .*v7.6.0"):
        up.fetch_tests(str(wrong), tmp_path / "cache")
    assert not (tmp_path / "cache" / "tests").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(up.SetupError, match="neither a directory with tests/ nor a git"):
        up.fetch_tests(str(tmp_path / "empty"), tmp_path / "cache")
    untagged = tmp_path / "untagged"
    untagged.mkdir()
    _git(untagged, "init", "-q")
    with pytest.raises(up.SetupError, match="git --git-dir .* failed"):
        up.fetch_tests(str(untagged), tmp_path / "cache")


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="6">
<testcase classname="tests.test_pfs" name="test_list_repo" time="0.1"/>
<testcase classname="tests.test_pfs" name="test_finish_commit[commit_arg0]" time="0.1"/>
<testcase classname="tests.test_pfs.TestPFSFile" name="test_context_manager" time="0.1"/>
<testcase classname="tests.test_pps" name="test_secrets" time="0.1"><failure message="x">t
</failure></testcase>
<testcase classname="tests.test_pps" name="test_run_cron" time="0.1"><error message="e"/>
</testcase>
<testcase classname="tests.test_version" name="test_remote_version" time="0.1">
<skipped message="s"/></testcase>
</testsuite></testsuites>"""


def test_junit_results_become_pytest_ids_by_outcome() -> None:
    outcome = up.parse_junit(JUNIT)
    assert outcome.passed == ["tests/test_pfs.py::test_list_repo",
                              "tests/test_pfs.py::test_finish_commit[commit_arg0]",
                              "tests/test_pfs.py::TestPFSFile::test_context_manager"]
    assert outcome.failed == ["tests/test_pps.py::test_secrets", "tests/test_pps.py::test_run_cron"]
    assert outcome.skipped == ["tests/test_version.py::test_remote_version"]
    assert outcome.summary() == "3 passed / 2 failed / 1 skipped" and not outcome.ok
    one = up.Outcome(passed=["a"])
    assert one.ok and one.summary() == "1 passed / 0 failed"
    assert not up.Outcome().ok  # nothing ran is a failure


def test_server_tracebacks_are_counted() -> None:
    log = "ok\nTraceback (most recent call last):\n  x\nTraceback (most recent call last):\n"
    assert up.count_tracebacks(log) == 2 and up.count_tracebacks("listening on x:1\n") == 0


@pytest.mark.parametrize(("url", "want"), [
    ("https://gist.githubusercontent.com/u/1/raw/2/wheel.html",
     "http://127.0.0.1:9/gist.githubusercontent.com/u/1/raw/2/wheel.html"),
    ("https://www.pachyderm.com/index.html", "http://127.0.0.1:9/www.pachyderm.com/index.html"),
    ("http://user:pw@example.com:8080?q=1", "http://127.0.0.1:9/example.com/?q=1"),
    ("file:///tmp/x", "file:///tmp/x"),
    ("s3://bucket/key", "s3://bucket/key"),
])  # fmt: skip
def test_http_urls_are_rewritten_onto_the_loopback_base(url: str, want: str) -> None:
    assert urls.loopback_url(url, "http://127.0.0.1:9/") == want


def test_the_plugin_rewrites_python_pachyderms_url_put_and_the_stand_in_serves_it(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from python_pachyderm.mixin import pfs

    monkeypatch.setattr(pfs._AtomicModifyFileURLOp, "__init__", pfs._AtomicModifyFileURLOp.__init__)
    with up.url_stand_in() as base:
        urls.install(base)
        urls.install(base)  # idempotent: one rewrite, not two
        op = pfs._AtomicModifyFileURLOp("/index.html", "https://www.pachyderm.com/index.html")
        sent = [req.add_file.url.URL for req in op.reqs() if req.HasField("add_file")]
        assert sent == [f"{base}/www.pachyderm.com/index.html"]
        with urllib.request.urlopen(sent[0], timeout=60) as answer:
            assert answer.status == 200 and answer.read() == up.STAND_IN
