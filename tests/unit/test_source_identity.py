"""agent.source.identity: every spelling of one repository is one source, old annotation forms
included, and different repositories stay different."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.source.identity import (
    canonical_repo,
    canonical_source_id,
    make_source_id,
    same_source,
)

SAME_REPO = {
    "local bare repo": ["/srv/git/x.git", "file:///srv/git/x.git", "/srv/git/x.git/",
                        "file://localhost/srv/git/x.git/", "/srv//git/./x.git",
                        "/srv/git/y/../x.git"],
    "work tree": ["/home/me/proj", "/home/me/proj/", "/home/me/proj/.git", "file:///home/me/proj"],
    "github": ["https://github.com/org/repo", "https://github.com/org/repo.git",
               "https://github.com/org/repo/", "https://user:secret@github.com/org/repo.git",
               "http://github.com/org/repo", "ssh://git@github.com/org/repo.git",
               "git@github.com:org/repo.git", "git@github.com:org/repo", "https://GitHub.com/Org/Repo",
               "ssh://git@github.com:22/org/repo", "https://github.com:443/org/repo",
               "git+ssh://git@github.com/org/repo"],
    "azure devops": ["https://dev.azure.com/org/project/_git/repo",
                     "https://org@dev.azure.com/org/project/_git/repo",
                     "https://pat:token@dev.azure.com/Org/Project/_git/Repo",
                     "git@ssh.dev.azure.com:v3/org/project/repo",
                     "https://org.visualstudio.com/project/_git/repo",
                     "https://org.visualstudio.com/DefaultCollection/project/_git/repo",
                     "org@vs-ssh.visualstudio.com:v3/org/project/repo"],
    "self-hosted": ["https://git.example.com/team/specs", "ssh://git@git.example.com/team/specs.git",
                    "git@git.example.com:team/specs.git", "https://GIT.example.com/team/specs/"],
}

DIFFERENT = [
    ("/srv/git/x.git", "/srv/git/y.git"),
    ("/srv/git/x.git", "/srv/git/x"),  # two directories that may both exist
    ("https://github.com/org/repo", "https://github.com/org/repo2"),
    ("https://github.com/org/repo", "https://gitlab.com/org/repo"),
    ("https://git.example.com/Team/specs", "https://git.example.com/team/specs"),  # case kept
    ("ssh://git@git.example.com:2222/team/specs", "https://git.example.com/team/specs"),
    ("https://git.example.com:8443/team/specs", "https://git.example.com/team/specs"),
    ("file:///srv/git/x.git", "https://srv/git/x"),
]


@pytest.mark.parametrize("kind", sorted(SAME_REPO))
def test_every_spelling_of_a_repository_is_one_source(kind: str) -> None:
    forms = SAME_REPO[kind]
    canon = {canonical_repo(f) for f in forms}
    assert len(canon) == 1, canon
    ids = [make_source_id(f, "main", "specs") for f in forms]
    assert all(same_source(ids[0], other) for other in ids[1:])


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_repositories_stay_different(a: str, b: str) -> None:
    assert canonical_repo(a) != canonical_repo(b)
    assert not same_source(make_source_id(a, "main", "specs"), make_source_id(b, "main", "specs"))


def test_canonical_forms_read_as_urls_without_credentials() -> None:
    assert canonical_repo("/srv/git/x.git") == "file:///srv/git/x.git"
    assert canonical_repo("git@github.com:org/repo.git") == "https://github.com/org/repo"
    assert canonical_repo("https://u:tok@dev.azure.com/O/P/_git/R") == \
        "https://dev.azure.com/o/p/_git/r"
    assert canonical_repo("ssh://git@host:2222/o/r.git") == "ssh://host:2222/o/r"
    assert canonical_repo("relative/x.git", cwd="/work") == "file:///work/relative/x.git"
    assert canonical_repo("s3://key:secret@bucket/x/") == "s3://bucket/x"


def test_source_ids_written_by_older_versions_are_recognised() -> None:
    # The agent used to write the resolved path (or the URL minus credentials) as given.
    assert same_source("/srv/git/pipelines.git#main:specs",
                       "file:///srv/git/pipelines.git#main:specs")
    assert same_source("https://github.com/Org/Repo.git#main:specs",
                       "git@github.com:org/repo#main:/specs/")
    assert same_source("local:/work/specs/", "local:/work/specs")
    assert canonical_source_id("/srv/git/x.git#main:specs") == "file:///srv/git/x.git#main:specs"


@pytest.mark.parametrize(("a", "b"), [
    ("/srv/git/x.git#main:specs", "/srv/git/x.git#dev:specs"),  # another branch
    ("/srv/git/x.git#main:specs", "/srv/git/x.git#main:other"),  # another folder
    ("team-a", "team-b"), ("team-a", "/srv/git/x.git#main:specs"),
])
def test_branch_path_and_free_form_ids_still_tell_sources_apart(a: str, b: str) -> None:
    assert not same_source(a, b)


def test_a_hash_or_blank_in_a_path_never_splits_the_id() -> None:
    sid = make_source_id(canonical_repo("/srv/my repo#1"), "main", "specs")
    assert sid == "file:///srv/my%20repo%231#main:specs"
    assert canonical_source_id(sid) == sid


_segment = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/\\"),
                   min_size=1, max_size=8)
_sources = st.one_of(
    st.lists(_segment, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
    st.builds(lambda h, p: f"https://{h}.example/{'/'.join(p)}",
              st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
              st.lists(_segment, min_size=1, max_size=3)),
    st.builds(lambda h, p: f"git@{h}.example:{'/'.join(p)}.git",
              st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
              st.lists(_segment, min_size=1, max_size=3)),
)


@pytest.mark.fuzz
@given(_sources)
def test_canonicalising_twice_changes_nothing(source: str) -> None:
    once = canonical_repo(source)
    assert canonical_repo(once) == once
    sid = make_source_id(once, "main", "specs")
    assert canonical_source_id(sid) == sid


@pytest.mark.fuzz
@given(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
       st.from_regex(r"[A-Za-z0-9._~-]{1,12}", fullmatch=True),
       st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True), min_size=1, max_size=3))
def test_credentials_never_reach_the_identity(host: str, secret: str, parts: list[str]) -> None:
    url = f"https://user:{secret}@{host}.example/{'/'.join(parts)}.git"
    canon = canonical_repo(url)
    assert "@" not in canon
    assert canon == canonical_repo(f"https://{host}.example/{'/'.join(parts)}")
