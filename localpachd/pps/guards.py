"""Pachyderm's guards on pipeline output repos, registered on the PFS hooks by `pps.register`.

PFS calls `ctx.delete_repo_guards` before DeleteRepo/DeleteRepos and `ctx.finish_commit_guards`
before FinishCommit of an open commit, unless the request says `force`. As in Pachyderm 2.7:
- a repo that is a pipeline's output cannot be deleted (DeletePipeline deletes it instead);
- an open commit with provenance in a pipeline's output repo cannot be finished by hand (the job
  engine finishes it; StopJob ends it).
DeletePipeline and the job engine work on `localpachd.pfs.model` directly, past these guards.
"""

from __future__ import annotations

from localpachd import errors
from localpachd.pfs import model
from localpachd.pps import db
from localpachd.store import Tx

PIPELINE_REPO = "cannot delete a repo associated with a pipeline - delete the pipeline instead"
PIPELINE_COMMIT = "cannot finish a pipeline output or meta commit, use 'stop job' instead"


def refuse_pipeline_repo(tx: Tx, project: str, repo: str) -> None:
    """DeleteRepo of a pipeline's output repo (Pachyderm's driver.canDeleteRepo)."""
    if db.current(tx, project, repo) is not None:
        raise errors.FailedPrecondition(
            f'error checking whether repo "{errors.repo_str(project, repo)}" can be deleted: '
            f"{PIPELINE_REPO}")


def refuse_pipeline_commit(tx: Tx, commit: model.Commit) -> None:
    """FinishCommit of a job's output commit: it has provenance and its repo is a pipeline's."""
    if (db.current(tx, commit.project, commit.repo) is not None
            and model.commit_provenance(tx, commit.cid)):  # fmt: skip
        raise errors.FailedPrecondition(PIPELINE_COMMIT)
