"""Errors decide what happens next by their type: sync_once copies an error class's `kind` and
`disposition` (agent.errors.Disposition) onto the SyncResult, with the commit it was about, and
the runner stalls, backs off or carries on from the disposition alone, so a new error type needs
no list in the runner. Real git (a bare remote); the errors are raised by the verify hook or by
the specs themselves, before any cluster is reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentcore_gitops import make_gitops, spec_files
from helpers.gitops import GitOps

from agent.errors import Conflict, Disposition, PachsyncError, SpecInvalid, Transient, UsageError
from agent.runner.backoff import BackoffPolicy
from agent.runner.status import AgentStatus, exit_code, is_failure, is_stall, record_result
from agent.source.verify import SignatureInvalid
from agent.sync import SyncOptions, SyncResult, sync_once


class Revoked(PachsyncError):
    """A new error type: the runner was never told its name."""

    kind = "Revoked"
    disposition = Disposition.STALL


class Flaky(PachsyncError):
    kind = "Flaky"  # disposition inherited: retry


def _signature(sha: str) -> PachsyncError:
    return SignatureInvalid(sha, "the commit is not signed")


RAISED = [
    (lambda sha: Revoked(f"key of {sha} revoked"), Revoked),
    (lambda sha: Flaky("try later"), Flaky),
    (_signature, SignatureInvalid),
    (lambda sha: Transient("git unreachable"), Transient),
    (lambda sha: Conflict("refused"), Conflict),
    (lambda sha: UsageError("bad option"), UsageError),
]


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    return make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]


def _run(gitops: GitOps, tmp_path: Path, error: PachsyncError | None = None) -> SyncResult:
    def verify(_path: Path, _sha: str) -> None:
        if error is not None:
            raise error

    opts = SyncOptions(source=str(gitops.remote), cache_dir=tmp_path / "cache",
                       pachd="grpc://127.0.0.1:9", verify=verify)
    return sync_once(opts)


def _fold(result: SyncResult) -> AgentStatus:
    return record_result(AgentStatus(source="s", branch="main"), result, trigger="test",
                         now=1.0, policy=BackoffPolicy(initial_s=5, max_s=60))


@pytest.mark.parametrize(("make", "cls"), RAISED, ids=[c.__name__ for _, c in RAISED])
def test_the_error_type_decides_stall_or_retry(gitops: GitOps, tmp_path: Path, make: object,
                                               cls: type[PachsyncError]) -> None:
    sha = gitops.head
    result = _run(gitops, tmp_path, make(sha))  # type: ignore[operator]
    assert (result.result, result.commit) == ("failed", sha), result
    assert (result.error_kind, result.disposition) == (cls.kind, cls.disposition)
    status = _fold(result)
    stalls = cls.disposition == Disposition.STALL
    assert is_stall(result) is stalls and status.stalled_commit == (sha if stalls else None)
    assert is_failure(result) is (not stalls) and (status.backoff_s > 0) is (not stalls)
    assert exit_code(result) == (1 if stalls else 2)


def test_invalid_specs_stall_on_their_commit(gitops: GitOps, tmp_path: Path) -> None:
    bad = spec_files()
    bad["specs/pipelines/copy.yaml"] += "bogus_key: 1\n"
    sha = gitops.push(bad, "typo")  # type: ignore[arg-type]
    result = _run(gitops, tmp_path)
    assert (result.result, result.commit) == ("invalid", sha), result
    assert (result.error_kind, result.disposition) == (SpecInvalid.kind, Disposition.STALL)
    assert _fold(result).stalled_commit == sha


def test_every_error_type_has_a_kind_and_a_disposition() -> None:
    assert PachsyncError.disposition == Disposition.RETRY and PachsyncError.kind == "Error"
    assert SpecInvalid.disposition == SignatureInvalid.disposition == Disposition.STALL
    assert Transient.disposition == Disposition.RETRY
    assert [c.kind for c in (SpecInvalid, Transient, Conflict, SignatureInvalid, UsageError)] == [
        "SpecInvalid", "Transient", "Conflict", "SignatureInvalid", "Error"]
