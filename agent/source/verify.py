"""Commit signature verification: only a head signed by an allowed key may be applied.

`agent.commands.agent` builds a verifier from `--verify-signatures ssh|gpg` and hands it to
`agent.runner.Runner`, which passes it to `agent.sync.sync_once` as `SyncOptions.verify`
(contract C4); sync calls it with the checked-out repo and the head sha before anything is
loaded or applied. Verification is done by git itself (`git verify-commit`):

- ssh: `gpg.ssh.allowedSignersFile` points at the given allowed-signers file (the format of
  `ssh-keygen -Y verify`, one `principal key-type key` per line); git runs ssh-keygen.
- gpg: `GNUPGHOME` points at the given keyring directory; only its public keys count.

The signature's type must match the mode, so a GPG-signed commit is never checked against the
operator's personal keyring when the agent was told to trust an SSH allowed-signers file.
An unsigned or wrongly signed head raises `SignatureInvalid` (error kind "SignatureInvalid").
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import EXIT_CHANGES, Disposition, PachsyncError, UsageError

_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_HEADERS = ("gpgsig", "gpgsig-sha256")
_MARKERS = {"ssh": "-----BEGIN SSH SIGNATURE-----", "gpg": "-----BEGIN PGP SIGNATURE-----"}
_TIMEOUT_S = 60


class SignatureInvalid(PachsyncError):
    """The head commit is unsigned or not signed by an allowed key: it is never applied."""

    kind = "SignatureInvalid"
    disposition = Disposition.STALL  # the same commit is never signed later
    exit_code = EXIT_CHANGES

    def __init__(self, sha: str, reason: str, hint: str = "") -> None:
        super().__init__(
            f"commit {sha[:12]} refused: {reason}",
            hint=hint or "sign the commit with an allowed key (git commit -S) and push it",
        )
        self.sha = sha
        self.reason = reason


@dataclass(frozen=True)
class SignaturePolicy:
    """How signatures are checked: `ssh` with an allowed-signers file or `gpg` with a keyring."""

    mode: str  # "ssh" | "gpg"
    allowed_signers: Path | None = None
    gpg_home: Path | None = None

    def __post_init__(self) -> None:
        if self.mode == "ssh":
            if self.allowed_signers is None or not self.allowed_signers.is_file():
                raise UsageError(
                    f"--verify-signatures ssh needs an allowed-signers file "
                    f"(got {self.allowed_signers})",
                    hint="pass --allowed-signers FILE with lines 'principal ssh-ed25519 AAAA…'")
        elif self.mode == "gpg":
            if self.gpg_home is None or not self.gpg_home.is_dir():
                raise UsageError(
                    f"--verify-signatures gpg needs a keyring directory (got {self.gpg_home})",
                    hint="pass --gpg-home DIR holding the public keys allowed to sign")
        else:
            raise UsageError(f"unknown signature mode {self.mode!r}", hint="use ssh or gpg")


def _git(repo_dir: Path, args: list[str], env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo_dir), *args], capture_output=True, text=True,
        timeout=_TIMEOUT_S, env=env, check=False)


def signature_block(repo_dir: Path, sha: str) -> str | None:
    """The commit's signature (gpgsig header, continuation lines joined), None if unsigned."""
    proc = _git(repo_dir, ["cat-file", "commit", sha])
    if proc.returncode != 0:
        raise SignatureInvalid(sha, f"cannot read the commit: {proc.stderr.strip()}")
    lines: list[str] = []
    for line in proc.stdout.split("\n"):
        if not line:
            break  # end of headers
        if lines and line.startswith(" "):
            lines.append(line[1:])
        elif lines:
            break
        elif line.split(" ", 1)[0] in _HEADERS:
            lines.append(line.split(" ", 1)[1])
    return "\n".join(lines) if lines else None


def _command(policy: SignaturePolicy, sha: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if policy.mode == "ssh":
        signers = str(Path(policy.allowed_signers or "").resolve())
        return ["-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", sha], env
    env["GNUPGHOME"] = str(Path(policy.gpg_home or "").resolve())
    return ["verify-commit", "--raw", sha], env


def verify_commit(repo_dir: Path, sha: str, policy: SignaturePolicy) -> str:
    """Check `sha` in `repo_dir`; returns git's description of the good signature."""
    if not _SHA.match(sha):
        raise SignatureInvalid(sha, "not a commit sha")
    block = signature_block(repo_dir, sha)
    if block is None:
        raise SignatureInvalid(sha, "the commit is not signed")
    if not block.startswith(_MARKERS[policy.mode]):
        raise SignatureInvalid(
            sha, f"the commit is not signed with an {policy.mode.upper()} signature",
            hint=f"the agent verifies {policy.mode} signatures only (--verify-signatures)")
    args, env = _command(policy, sha)
    proc = _git(repo_dir, args, env)
    output = (proc.stderr + proc.stdout).strip()
    if policy.mode == "gpg":
        return _check_gpg(sha, proc.returncode, output)
    if proc.returncode != 0:
        raise SignatureInvalid(sha, _reason(output) or "the signature does not verify")
    return _reason(output)


def _check_gpg(sha: str, returncode: int, output: str) -> str:
    """Judge gpg's machine-readable status lines (`--raw`), not its localised prose."""
    status = {ln.split()[1]: ln for ln in output.splitlines()
              if ln.startswith("[GNUPG:] ") and len(ln.split()) > 1}
    if "NO_PUBKEY" in status:
        key = status["NO_PUBKEY"].split()[2]
        raise SignatureInvalid(sha, f"signed by key {key}, which is not in the keyring",
                               hint="import the signer's public key into --gpg-home, or sign "
                                    "with an allowed key")
    for bad in ("BADSIG", "EXPKEYSIG", "REVKEYSIG", "EXPSIG", "ERRSIG"):
        if bad in status:
            raise SignatureInvalid(sha, f"gpg reports {bad}: {status[bad][9:]}")
    if returncode != 0 or "GOODSIG" not in status or "VALIDSIG" not in status:
        raise SignatureInvalid(sha, _reason(output) or "the signature does not verify")
    who = status["GOODSIG"].split(" ", 3)
    fingerprint = status["VALIDSIG"].split()[2]
    return f"Good signature from {who[3] if len(who) > 3 else '?'} (key {fingerprint})"


def _reason(output: str) -> str:
    """The most telling lines of git/ssh-keygen output."""
    lines = [ln.strip() for ln in output.splitlines()
             if ln.strip() and not ln.startswith("[GNUPG:]")]
    return "; ".join(lines[:3])


def make_verifier(policy: SignaturePolicy) -> Callable[[Path, str], None]:
    """The `SyncOptions.verify` callable for this policy."""

    def verify(repo_dir: Path, sha: str) -> None:
        verify_commit(repo_dir, sha, policy)

    return verify
