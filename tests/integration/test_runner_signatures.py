"""Commit signature verification with real git, a real ssh-keygen key, the real sync_once and a
real localpachd: a signed head is applied; an unsigned or wrongly signed head is refused,
reported, not re-run, and the cluster keeps the last good spec."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.gitops import git
from runner_gitops import UpperGitOps, pipeline_info

from agent.runner import Runner, RunnerConfig
from agent.source.verify import SignatureInvalid, SignaturePolicy, make_verifier, verify_commit
from agent.sync import SyncOptions, sync_once

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                reason="ssh-keygen not installed: cannot make an SSH signing key")


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, capture_output=True)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(allowed key, foreign key, allowed-signers file naming only the first)."""
    good = keygen(tmp_path / "ops_key", "ops")
    bad = keygen(tmp_path / "mallory_key", "mallory")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ops@example.com {(tmp_path / 'ops_key.pub').read_text()}")
    return good, bad, signers


def test_verify_commit_accepts_only_allowed_ssh_signatures(tmp_path: Path,
                                                          keys: tuple[Path, Path, Path]) -> None:
    good, bad, signers = keys
    repo = UpperGitOps(tmp_path / "git")
    policy = SignaturePolicy("ssh", allowed_signers=signers)
    signed = repo.commit("signed", signing_key=good)
    assert "ops@example.com" in verify_commit(repo.work, signed, policy)
    unsigned = repo.commit("unsigned")
    with pytest.raises(SignatureInvalid, match="not signed"):
        verify_commit(repo.work, unsigned, policy)
    foreign = repo.commit("foreign", signing_key=bad)
    with pytest.raises(SignatureInvalid, match="No principal matched"):
        verify_commit(repo.work, foreign, policy)
    signers.write_text("")  # emptying the allowed-signers file revokes the key
    with pytest.raises(SignatureInvalid):
        verify_commit(repo.work, signed, policy)
    assert git(repo.work, "rev-parse", "HEAD") == foreign


def test_signed_head_applied_unsigned_head_refused(tmp_path: Path, localpachd: object,
                                                   pach_client: object,
                                                   keys: tuple[Path, Path, Path]) -> None:
    good, bad, signers = keys
    repo = UpperGitOps(tmp_path / "git")
    opts = SyncOptions(source=str(repo.remote), branch="main",
                       pachd=localpachd.address,  # type: ignore[attr-defined]
                       cache_dir=tmp_path / "cache")
    runner = Runner(opts, sync_once, config=RunnerConfig(interval_s=3600),
                    verify=make_verifier(SignaturePolicy("ssh", allowed_signers=signers)))

    first = repo.commit("signed v1", signing_key=good)
    result = runner.run_once()
    assert result is not None and result.result == "applied", result.errors
    description, annotations = pipeline_info(pach_client, "upper")
    assert description == "signed v1" and annotations["pachsync.io/source-commit"] == first

    for description, key in (("unsigned v2", None), ("foreign v3", bad)):
        sha = repo.commit(description, signing_key=key)
        result = runner.run_once()
        assert result is not None and result.result == "failed"
        assert result.error_kind == "SignatureInvalid" and sha[:12] in result.errors[0]
        status = runner.status
        assert status.stalled_commit == sha and status.last_applied_commit == first
        assert pipeline_info(pach_client, "upper")[0] == "signed v1"  # nothing applied

    runner.run_once()  # head unchanged: not verified or planned again
    assert runner.status.stalled_checks == 1
    assert runner.metrics.registry.get_sample_value(
        "pachsync_sync_total", {"result": "failed"}) == 2

    fixed = repo.commit("signed v4", signing_key=good)
    result = runner.run_once()
    assert result is not None and result.result == "applied", result.errors
    assert runner.status.stalled_commit is None and runner.status.last_applied_commit == fixed
    assert pipeline_info(pach_client, "upper")[0] == "signed v4"


@pytest.fixture
def gpg_homes(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """(signer's GnuPG home with a fresh key, agent's keyring with only its public key, fpr)."""
    if shutil.which("gpg") is None or shutil.which("gpgconf") is None:
        pytest.skip("gpg not installed: cannot make a GPG signing key")
    signer, keyring = tmp_path / "gnupg-signer", tmp_path / "gnupg-agent"
    for home in (signer, keyring):
        home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(signer))
    subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase",
                    "", "--quick-gen-key", "Ops <ops@example.com>", "ed25519", "sign", "never"],
                   env=env, check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--list-keys", "--with-colons"], env=env, check=True,
                             capture_output=True, text=True).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
    public = subprocess.run(["gpg", "--export", "--armor", fpr], env=env, check=True,
                            capture_output=True).stdout
    subprocess.run(["gpg", "--batch", "--quiet", "--import"], input=public, check=True,
                   capture_output=True, env=dict(os.environ, GNUPGHOME=str(keyring)))
    try:
        yield signer, keyring, fpr
    finally:  # gpg starts an agent per home: never leave it running
        for home in (signer, keyring):
            subprocess.run(["gpgconf", "--kill", "all"], env=dict(os.environ, GNUPGHOME=str(home)),
                           check=False, capture_output=True)


def test_verify_commit_with_a_gpg_keyring(tmp_path: Path, gpg_homes: tuple[Path, Path, str],
                                          keys: tuple[Path, Path, Path]) -> None:
    signer, keyring, fpr = gpg_homes
    repo = UpperGitOps(tmp_path / "git")
    repo.commit("unsigned")
    (repo.work / "specs" / "pipelines" / "upper.yaml").write_text("changed\n")
    git(repo.work, "add", "-A")
    subprocess.run(["git", "-c", f"user.signingkey={fpr}", "commit", "-q", "-S", "-m", "gpg"],
                   cwd=repo.work, check=True, capture_output=True,
                   env=dict(os.environ, GNUPGHOME=str(signer)))
    signed = git(repo.work, "rev-parse", "HEAD")
    policy = SignaturePolicy("gpg", gpg_home=keyring)
    assert fpr in verify_commit(repo.work, signed, policy)
    with pytest.raises(SignatureInvalid, match="not signed"):
        verify_commit(repo.work, git(repo.work, "rev-parse", "HEAD~1"), policy)
    empty = tmp_path / "gnupg-empty"
    empty.mkdir(mode=0o700)
    try:
        with pytest.raises(SignatureInvalid, match="not in the keyring"):
            verify_commit(repo.work, signed, SignaturePolicy("gpg", gpg_home=empty))
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=dict(os.environ, GNUPGHOME=str(empty)),
                       check=False, capture_output=True)
    # A GPG signature never passes an SSH policy (no fallback to some other keyring).
    with pytest.raises(SignatureInvalid, match="not signed with an SSH signature"):
        verify_commit(repo.work, signed, SignaturePolicy("ssh", allowed_signers=keys[2]))
