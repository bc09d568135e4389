"""agent.notify.azure: every Azure DevOps URL form gives one (org, project, repo); the status
request has the path, api-version, body shape and auth the REST API "Statuses - Create" wants."""

from __future__ import annotations

import base64

import pytest

from agent.notify.azure import (
    AzureRepo,
    auth_header,
    bounded,
    parse_azure_repo,
    status_body,
    status_url,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
FORMS = [
    "https://dev.azure.com/Contoso/Iris/_git/specs",
    "https://contoso@dev.azure.com/Contoso/Iris/_git/specs",
    "https://user:secret@dev.azure.com/contoso/iris/_git/specs.git",
    "git@ssh.dev.azure.com:v3/Contoso/Iris/specs",
    "ssh://git@ssh.dev.azure.com/v3/Contoso/Iris/specs",
    "Contoso@vs-ssh.visualstudio.com:v3/Contoso/Iris/specs",
    "https://contoso.visualstudio.com/Iris/_git/specs",
    "https://contoso.visualstudio.com/DefaultCollection/Iris/_git/specs",
]


@pytest.mark.parametrize("url", FORMS)
def test_every_azure_form_names_one_repository(url: str) -> None:
    assert parse_azure_repo(url) == AzureRepo("contoso", "iris", "specs")


def test_project_with_a_space_stays_encoded() -> None:
    repo = parse_azure_repo("https://dev.azure.com/org/My%20Project/_git/repo")
    assert repo == AzureRepo("org", "my%20project", "repo")


@pytest.mark.parametrize("url", ["https://github.com/org/repo", "/srv/git/specs",
                                 "git@github.com:org/repo.git",
                                 "https://dev.azure.com/org/project/repo"])
def test_other_hosts_are_not_azure(url: str) -> None:
    assert parse_azure_repo(url) is None


def test_status_url_and_api_version() -> None:
    url = status_url("https://dev.azure.com/", AzureRepo("o", "p", "r"), SHA)
    assert url == (f"https://dev.azure.com/o/p/_apis/git/repositories/r/commits/{SHA}"
                   "/statuses?api-version=7.1")
    with pytest.raises(ValueError):
        status_url("https://dev.azure.com", AzureRepo("o", "p", "r"), "main/../x")


def test_body_shape() -> None:
    assert status_body("failed", "bad", "sync", "https://agent/status") == {
        "state": "failed", "description": "bad", "targetUrl": "https://agent/status",
        "context": {"name": "sync", "genre": "pachsync"}}
    assert "targetUrl" not in status_body("pending", "x", "health")
    with pytest.raises(ValueError):
        status_body("running", "x", "sync")


@pytest.mark.parametrize("text", ["a\nb", "x\x1b[31mred", "##vso[task.setvariable]x",
                                  "é" * 1000, "\u2028line"])
def test_description_is_one_bounded_printable_line(text: str) -> None:
    out = bounded(text)
    assert len(out) <= 400 and out.isprintable() and "##" not in out


def test_pat_is_basic_with_empty_user_and_jwt_is_bearer() -> None:
    assert auth_header("pat123") == "Basic " + base64.b64encode(b":pat123").decode()
    jwt = "eyJhbGciOi.eyJzdWIiOi.sig-_x"
    assert auth_header(jwt) == f"Bearer {jwt}"
