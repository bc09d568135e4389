"""How bump-image reads a failed `git push`: lost race (replay and retry), refusal by the server
(stop at once: retrying cannot fix a branch policy), or anything else (retry the same commit).
The texts are what git prints for Azure Repos, GitHub and plain git servers.
"""

from __future__ import annotations

import pytest

from agent.source.push import classify_push_failure


@pytest.mark.parametrize(
    ("output", "kind"),
    [
        ("To https://dev.azure.com/o/p/_git/r\n!\tHEAD:refs/heads/main\t[rejected] (fetch first)",
         "race"),
        ("! [rejected]        HEAD -> main (non-fast-forward)", "race"),
        ("!\tHEAD:refs/heads/main\t[remote rejected] (cannot lock ref 'refs/heads/main')",
         "race"),
        ("!\tHEAD:refs/heads/main\t[remote rejected] (TF402455: Pushes to this branch are not "
         "permitted; you must use a pull request to update this branch.)", "refused"),
        ("remote: error: GH006: Protected branch update failed for refs/heads/main.\n"
         "!\tHEAD:refs/heads/main\t[remote rejected] (protected branch hook declined)", "refused"),
        ("remote: TF401027: You need the Git 'GenericContribute' permission", "refused"),
        ("fatal: unable to access 'https://dev.azure.com/o/p/_git/r/': The requested URL "
         "returned error: 403", "refused"),
        ("fatal: unable to access 'https://example.com/r.git/': Could not resolve host", "network"),
        ("ssh: connect to host example.com port 22: Connection timed out", "network"),
    ],
)
def test_push_failures_are_classified(output: str, kind: str) -> None:
    assert classify_push_failure(output) == kind
