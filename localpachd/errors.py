"""Domain errors of localpachd and the Pachyderm error texts clients parse.

Raised by the store, pfs, transaction and pps modules; turned into gRPC status codes by the one
error boundary in `localpachd.server` (`status_of`). Texts follow Pachyderm 2.7 because
python-pachyderm matches some of them with regular expressions (see SEMANTICS.md).
"""

from __future__ import annotations

import grpc


class PachError(Exception):
    """Base class: a message plus the gRPC status code it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(PachError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(PachError):
    code = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgument(PachError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(PachError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(PachError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Unauthenticated(PachError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Aborted(PachError):
    code = grpc.StatusCode.ABORTED


class PermissionDenied(PachError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Internal(PachError):
    code = grpc.StatusCode.INTERNAL


class ResourceExhausted(PachError):
    """A bound was reached: a message over the size limit, or no wait slot left."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


AUTH_NOT_ACTIVATED = "the auth service is not activated"


def repo_str(project: str, repo: str) -> str:
    """Pachyderm 2.7's Repo.String() for user repos: `project/name`."""
    return f"{project}/{repo}"


def repo_not_found(project: str, repo: str) -> NotFound:
    return NotFound(f"repo {repo_str(project, repo)} not found")


def repo_exists(project: str, repo: str) -> AlreadyExists:
    return AlreadyExists(f"repo {repo_str(project, repo)} already exists")


def project_not_found(project: str) -> NotFound:
    return NotFound(f'project "{project}" not found')


def project_exists(project: str) -> AlreadyExists:
    return AlreadyExists(f"project {project} already exists")


def branch_not_found(project: str, repo: str, branch: str) -> NotFound:
    return NotFound(f'branch "{branch}" not found in repo {repo_str(project, repo)}')


def commit_not_found(project: str, repo: str, commit: str) -> NotFound:
    return NotFound(f"commit {repo_str(project, repo)}@{commit} not found")


def commit_set_not_found(commit_set: str) -> NotFound:
    return NotFound(f"no commits found for commitset {commit_set}")


def commit_str(project: str, repo: str, commit: str, branch: str = "") -> str:
    """Pachyderm 2.7's Commit.String(): `project/repo@branch=id` (or `project/repo@id`)."""
    return f"{repo_str(project, repo)}@{branch + '=' if branch else ''}{commit}"


MATCHED_NON_FILE = "cannot get directory or non-regular file. Use GetFileTAR instead"
MATCHED_MULTIPLE = "matched multiple files. Use GetFileTAR instead"


def file_not_found(project: str, repo: str, commit: str, path: str) -> NotFound:
    return NotFound(f"file {path} not found in repo {repo_str(project, repo)} at commit {commit}")


def commit_finished(project: str, repo: str, commit: str) -> FailedPrecondition:
    return FailedPrecondition(f"commit {repo_str(project, repo)}@{commit} has already finished")


def parent_not_finished(project: str, repo: str, commit: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"parent commit {repo_str(project, repo)}@{commit} has not been finished"
    )


def datum_not_matched(filters: list[str], job_id: str) -> PachError:
    """Pachyderm 2.7's RestartDatum when no running datum of the job matches (its workers'
    Cancel): the filters as Go prints a []string (`[a b]`), code UNKNOWN as in 2.7."""
    return PachError(f"datum matching filter [{' '.join(filters)}] could not be found for "
                     f"job ID {job_id}")
