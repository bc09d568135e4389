"""azure-pipelines.yml, checked offline: the Azure Pipelines JSON schema, every script step calls
a command that exists here (make target, `pachsync` subcommand with options that parse, .ci/
script), the loop guards, where the cluster credentials may go (conditions evaluated for PRs
from the same repository, from forks and for main), and the helper scripts
(.ci/changed_paths.py against a real git repo, .ci/post_pr_comment.py against a local HTTP
stand-in for the Azure DevOps REST API, .ci/plan_skipped.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from helpers.gitops import git, write_files

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PIPELINE = ROOT / "azure-pipelines.yml"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    return yaml.safe_load(PIPELINE.read_text())


def steps(pipeline: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for stage in pipeline["stages"]:
        for job in stage["jobs"]:
            for step in job["steps"]:
                yield job["job"], step


def jobs(pipeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job"]: job for stage in pipeline["stages"] for job in stage["jobs"]}


def test_pipeline_validates_against_the_azure_pipelines_schema(tmp_path: Path) -> None:
    """One check-jsonschema run over the real file and a copy with a misspelt step key (so the
    check is shown to bite). The vendored schema's patterns are not ECMA-262 clean, so the
    python regex engine reads them."""
    broken = tmp_path / "broken.yml"
    broken.write_text(PIPELINE.read_text().replace("displayName: make test", "dispalyName: x"))
    out = subprocess.run(
        [str(BIN / "check-jsonschema"), "--regex-variant", "python", "--output-format", "json",
         "--builtin-schema", "vendor.azure-pipelines", str(PIPELINE), str(broken)],
        capture_output=True, text=True, timeout=120,
    )
    report = json.loads(out.stdout)
    assert report["parse_errors"] == []
    assert {e["filename"] for e in report["errors"]} == {str(broken)}, report["errors"][:3]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, flags=re.M))


def commands_of(script: str) -> list[list[str]]:
    """Each command of a script step, with $(VAR) macros made concrete and redirections cut."""
    concrete = re.sub(r"\$\(([\w.]+)\)", lambda m: f"X{m[1].replace('.', '_')}", script)
    out = []
    for line in concrete.splitlines():
        for part in re.split(r"&&|\|\||;", line):
            words = shlex.split(part, comments=True)
            if ">" in words:
                words = words[: words.index(">")]
            if words:
                out.append(words)
    return out


def test_every_script_step_calls_a_command_of_this_project(pipeline: dict[str, Any]) -> None:
    from agent.cli import build_parser

    parser = build_parser()
    seen: set[str] = set()
    for job, step in steps(pipeline):
        if "script" not in step:
            continue
        for words in commands_of(step["script"]):
            program = words[0]
            seen.add(program)
            where = f"job {job}, step {step.get('displayName')!r}: {' '.join(words)}"
            if program == "make":
                assert set(words[1:]) <= make_targets(), f"no such make target: {where}"
            elif program == ".venv/bin/pachsync":
                try:
                    parser.parse_args(words[1:])  # the subcommand exists and its options parse
                except SystemExit as exc:
                    raise AssertionError(f"pachsync rejects {where}") from exc
            elif program == "python3":
                script = ROOT / words[1]
                assert words[1].startswith(".ci/") and script.is_file(), f"missing: {where}"
                help_out = subprocess.run([sys.executable, str(script), "--help"],
                                          capture_output=True, text=True)
                assert help_out.returncode == 0, where
            else:
                raise AssertionError(f"{where}: not a command of this project")
    assert {"make", ".venv/bin/pachsync", "python3"} <= seen


def test_pull_requests_run_tests_validate_and_post_the_plan(pipeline: dict[str, Any]) -> None:
    scripts = {job: [s["script"] for j, s in steps(pipeline) if j == job and "script" in s]
               for job in jobs(pipeline)}
    assert "make test" in scripts["Tests"]
    assert any("pachsync validate" in s and "--format azure" in s for s in scripts["Tests"])
    plan_job = jobs(pipeline)["Plan"]
    assert "PullRequest" in plan_job["condition"]
    joined = "\n".join(scripts["Plan"])
    assert "--format markdown" in joined
    assert joined.index("plan --") < joined.index("post_pr_comment")
    envs = {k: v for _, s in steps(pipeline) for k, v in s.get("env", {}).items()}
    assert envs["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
    assert envs["PACH_PYTHON_AUTH_TOKEN"] == "$(PACHD_TOKEN)"  # secret mapped, never inline


class Condition:
    """The subset of Azure Pipelines' condition expressions this file uses: and, or, not, eq,
    ne (case-insensitive, as Azure compares strings), contains, succeeded(), always(),
    succeededOrFailed(), 'literals', variables['Name'] and other NAME['key'] lookups (read from
    the run's variables as "NAME['key']"; undefined reads as '')."""

    TOKEN = re.compile(r"\s*(?:(\w+)\s*\(|([\w.]+)\[\s*'([^']+)'\s*\]|'([^']*)')")

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = {k.lower(): v for k, v in variables.items()}

    def __call__(self, text: str) -> bool:
        value, rest = self._expr(text)
        assert not rest.strip(), f"unparsed: {rest!r}"
        return value in (True, "True", "true")

    def _expr(self, text: str) -> tuple[Any, str]:
        m = self.TOKEN.match(text)
        assert m, f"cannot parse {text!r}"
        rest = text[m.end():]
        if m[2]:
            name = m[3] if m[2] == "variables" else f"{m[2]}['{m[3]}']"
            return self.variables.get(name.lower(), ""), rest
        if m[4] is not None:
            return m[4], rest
        args: list[Any] = []
        while not rest.lstrip().startswith(")"):
            value, rest = self._expr(rest)
            args.append(value)
            rest = rest.lstrip()
            rest = rest[1:] if rest.startswith(",") else rest
        return self._call(m[1].lower(), args), rest.lstrip()[1:]

    @staticmethod
    def _call(name: str, args: list[Any]) -> Any:
        def text(v: Any) -> str:
            return str(v).lower()
        calls = {
            "and": lambda: all(a is True for a in args), "or": lambda: any(a is True for a in args),
            "not": lambda: args[0] is not True, "eq": lambda: text(args[0]) == text(args[1]),
            "ne": lambda: text(args[0]) != text(args[1]),
            "contains": lambda: text(args[1]) in text(args[0]),
            "succeeded": lambda: True, "always": lambda: True, "succeededorfailed": lambda: True,
        }
        return calls[name]()


RUNS = {
    "same-repository PR": {"Build.Reason": "PullRequest", "System.PullRequest.IsFork": "False",
                           "Build.SourceBranch": "refs/pull/7/merge"},
    "fork PR": {"Build.Reason": "PullRequest", "System.PullRequest.IsFork": "True",
                "Build.SourceBranch": "refs/pull/8/merge"},
    "main": {"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main",
             "Build.SourceVersionMessage": "Merge PR 7",
             "dependencies.Images.outputs['changes.stages']": "true"},
}


def jobs_that_run(pipeline: dict[str, Any], run: str) -> set[str]:
    evaluate = Condition(RUNS[run])
    out = set()
    for stage in pipeline["stages"]:
        if not evaluate(stage.get("condition", "succeeded()")):
            continue
        out |= {job["job"] for job in stage["jobs"]
                if evaluate(job.get("condition", "succeeded()"))}
    return out


def group_links(pipeline: dict[str, Any]) -> set[str]:
    """Where the variable group is linked: 'pipeline', 'stage:<name>' or 'job:<name>'."""
    def linked(holder: dict[str, Any]) -> bool:
        return any("group" in v for v in holder.get("variables", []) if isinstance(v, dict))
    found = {"pipeline"} if linked(pipeline) else set()
    for stage in pipeline["stages"]:
        found |= {f"stage:{stage['stage']}"} if linked(stage) else set()
        found |= {f"job:{job['job']}" for job in stage["jobs"] if linked(job)}
    return found


@pytest.mark.parametrize(("run", "expected"), [
    ("same-repository PR", {"Tests", "Plan", "Preview", "PreviewComment"}),
    ("fork PR", {"Tests", "PlanSkipped"}),
    ("main", {"Tests", "Images", "Bump"}),
])
def test_which_jobs_run(pipeline: dict[str, Any], run: str, expected: set[str]) -> None:
    assert jobs_that_run(pipeline, run) == expected


def test_the_cluster_credentials_reach_only_the_plan_step(pipeline: dict[str, Any]) -> None:
    """The group is linked where it is needed only (never to job Tests, which prints what a PR
    controls); the token is mapped into the env of one step, the plan, and no script names it;
    that step takes the address explicitly; and nothing in its job prints repository data
    before it (a logging command printed by another job cannot reach this job's variables)."""
    assert group_links(pipeline) == {"job:Plan", "stage:Release"}
    mapped = [(job, s) for job, s in steps(pipeline) if "$(PACHD_TOKEN)" in str(s.get("env"))]
    assert len(mapped) == 1
    job, plan = mapped[0]
    assert job == "Plan" and plan["env"] == {"PLAN_PACHD_ADDRESS": "$(PACHD_ADDRESS)",
                                             "PLAN_SOURCE_ID": "$(PACHSYNC_SOURCE_ID)",
                                             "PACH_PYTHON_AUTH_TOKEN": "$(PACHD_TOKEN)"}
    assert all("PACHD_TOKEN" not in s.get("script", "") for _, s in steps(pipeline))
    words = commands_of(plan["script"])[0]
    assert words[:2] == [".venv/bin/pachsync", "plan"]
    assert words[words.index("--pachd") + 1] == "$PLAN_PACHD_ADDRESS"
    before = jobs(pipeline)["Plan"]["steps"]
    before = before[: before.index(plan)]
    assert [s.get("script") for s in before if "script" in s] == ["make venv"]
    assert {s.get("task") for s in before if "task" in s} <= {"UsePythonVersion@0", "Cache@2"}


def test_a_fork_pr_gets_no_token_and_the_log_says_so(pipeline: dict[str, Any]) -> None:
    assert "Plan" not in jobs_that_run(pipeline, "fork PR")
    skipped = jobs(pipeline)["PlanSkipped"]
    assert "variables" not in skipped and all("env" not in s for s in skipped["steps"])
    (script,) = [s["script"] for s in skipped["steps"] if "script" in s]
    assert commands_of(script) == [["python3", ".ci/plan_skipped.py"]]
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "plan_skipped.py")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("pachsync plan skipped: this pull request comes from a fork")
    assert out[1] == f"##vso[task.logissue type=warning]{out[0]}"
    assert not set(";]%") & set(out[0])  # constant text that needs no escaping


def test_main_builds_pushes_by_sha_and_bumps_without_looping(pipeline: dict[str, Any]) -> None:
    trigger = pipeline["trigger"]
    assert trigger["branches"]["include"] == ["main"]
    assert "specs" in trigger["paths"]["exclude"]  # spec-only commits (and the bump) build nothing
    docker = [s for _, s in steps(pipeline) if s.get("task") == "Docker@2"]
    assert {s["inputs"]["command"] for s in docker} == {"build", "push"}
    for step in docker:
        assert step["inputs"]["tags"] == "$(Build.SourceVersion)", "tag = commit sha, never latest"
        if step["inputs"]["command"] == "build":
            target = re.search(r"--target (\w+)", step["inputs"]["arguments"])
            assert target and target[1] in {"stages", "agent"}
    built = {re.search(r"--target (\w+)", s["inputs"]["arguments"])[1]  # type: ignore[index]
             for s in docker if s["inputs"]["command"] == "build"}
    assert built == {"stages", "agent"}
    bump = next(s for _, s in steps(pipeline) if "bump-image" in s.get("script", ""))
    words = commands_of(bump["script"])[0]
    assert {"--commit", "--push"} <= set(words) and not any("force" in w for w in words)
    assert words[2] == "XACR_LOGIN_SERVER/XstagesRepository" and words[3] == "XBuild_SourceVersion"
    assert "[skip ci]" in bump["condition"]
    from agent.bump import commit_message

    assert commit_message("acr.io/x", "abc").endswith("[skip ci]")
    assert jobs(pipeline)["Bump"]["steps"][0]["persistCredentials"] == "true"


def test_stages_repository_matches_the_image_the_specs_run(pipeline: dict[str, Any]) -> None:
    variables = {v["name"]: v["value"] for v in pipeline["variables"] if "name" in v}
    for path in (ROOT / "specs" / "pipelines").glob("*.yaml"):
        image = yaml.safe_load(path.read_text())["transform"]["image"]
        assert image.split(":")[0].endswith("/" + variables["stagesRepository"]), path.name


def test_agent_repository_matches_the_image_deploy_runs(pipeline: dict[str, Any]) -> None:
    variables = {v["name"]: v["value"] for v in pipeline["variables"] if "name" in v}
    deployment = yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    repository = container["image"].rsplit(":", 1)[0]
    assert repository.endswith("/" + variables["agentRepository"])
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == [repository]


def test_changed_paths_covers_what_each_image_copies() -> None:
    changed = load_script("changed_paths")
    dockerfile = (ROOT / "Dockerfile").read_text()
    blocks = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    sources: dict[str, set[str]] = {}
    for block in blocks:
        name = block.split()[2]
        found = re.findall(r"^COPY (?!--from)(\S+)", block, flags=re.M)
        sources[name] = set(found)
    for image in ("stages", "agent"):
        needed = sources[image] | sources[f"{image}-deps"]
        missing = needed - set(changed.IMAGES[image])
        assert not missing, f".ci/changed_paths.py ignores {image} sources {missing}"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["specs/pipelines/model.yaml"], {"stages": False, "agent": False}),
        (["stages/train.py", "README.md"], {"stages": True, "agent": False}),
        (["agent/sync.py"], {"stages": False, "agent": True}),
        (["requirements/agent.txt"], {"stages": False, "agent": True}),
        (["Dockerfile"], {"stages": True, "agent": True}),
        (["stagesX/x.py", "agentic.md"], {"stages": False, "agent": False}),
        (None, {"stages": True, "agent": True}),
    ],
)
def test_changed_paths_decides_per_image(files: list[str] | None, expected: dict[str, bool]
                                         ) -> None:
    assert load_script("changed_paths").affected(files) == expected


def test_changed_paths_sets_output_variables_from_real_git(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    for commit, path in (("one", "README.md"), ("two", "stages/split.py")):
        write_files(tmp_path, {path: "x\n"})
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-q", "-m", commit)
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "changed_paths.py")], cwd=tmp_path,
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert "##vso[task.setvariable variable=stages;isOutput=true]true" in out.stdout
    assert "##vso[task.setvariable variable=agent;isOutput=true]false" in out.stdout


class FakeAzureDevOps(BaseHTTPRequestHandler):
    """Just enough of the Pull Request Threads API: list, create, edit a comment."""

    threads: list[dict[str, Any]] = []
    calls: list[tuple[str, str, str]] = []
    fail_with: int | None = None
    fail_message = "TF400813: not authorized"

    def _reply(self, code: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.calls.append((method, self.path, self.headers["Authorization"]))
        if self.fail_with:
            return self._reply(self.fail_with, {"message": self.fail_message})
        if method == "GET":
            return self._reply(200, {"value": self.threads, "count": len(self.threads)})
        doc = json.loads(body)
        if method == "POST":
            thread = {"id": 7 + len(self.threads), "comments": [dict(doc["comments"][0], id=1)]}
            self.threads.append(thread)
            return self._reply(200, thread)
        thread_id, comment_id = re.findall(r"/(\d+)", self.path.split("?")[0])[-2:]
        (thread,) = [t for t in self.threads if t["id"] == int(thread_id)]
        comment = thread["comments"][0]
        assert int(comment_id) == comment["id"]
        comment["content"] = doc["content"]
        return self._reply(200, comment)

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def azure_devops() -> Iterator[str]:
    FakeAzureDevOps.threads, FakeAzureDevOps.calls, FakeAzureDevOps.fail_with = [], [], None
    FakeAzureDevOps.fail_message = "TF400813: not authorized"
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAzureDevOps)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/org/"
    finally:
        server.shutdown()
        server.server_close()


def test_plan_comment_is_created_once_then_updated(azure_devops: str, tmp_path: Path) -> None:
    post = load_script("post_pr_comment")
    env = {"SYSTEM_COLLECTIONURI": azure_devops, "SYSTEM_TEAMPROJECT": "ML Platform",
           "BUILD_REPOSITORY_ID": "repo-guid", "SYSTEM_PULLREQUEST_PULLREQUESTID": "42",
           "SYSTEM_ACCESSTOKEN": "s3cret"}
    plan = tmp_path / "plan.md"
    plan.write_text("## pachsync plan\n| pipeline | action |\n|---|---|\n| model | update |\n")
    assert post.main(["--file", str(plan)], env) == 0
    plan.write_text("## pachsync plan\nno changes\n")
    assert post.main(["--file", str(plan)], env) == 0
    methods = [c[0] for c in FakeAzureDevOps.calls]
    assert methods == ["GET", "POST", "GET", "PATCH"]
    assert all(c[1].startswith("/org/ML%20Platform/_apis/git/repositories/repo-guid/"
                               "pullRequests/42/threads") for c in FakeAzureDevOps.calls)
    assert all("api-version=7.1" in c[1] for c in FakeAzureDevOps.calls)
    assert {c[2] for c in FakeAzureDevOps.calls} == {"Basic OnMzY3JldA=="}  # base64(":s3cret")
    assert len(FakeAzureDevOps.threads) == 1
    content = FakeAzureDevOps.threads[0]["comments"][0]["content"]
    assert content.startswith(post.MARKER) and "no changes" in content


def test_plan_comment_failures_fail_the_step(azure_devops: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    post = load_script("post_pr_comment")
    plan = tmp_path / "plan.md"
    plan.write_text("x")
    env = {"SYSTEM_COLLECTIONURI": azure_devops, "SYSTEM_TEAMPROJECT": "p",
           "BUILD_REPOSITORY_ID": "r", "SYSTEM_PULLREQUEST_PULLREQUESTID": "1",
           "SYSTEM_ACCESSTOKEN": "t"}
    FakeAzureDevOps.fail_with = 403
    assert post.main(["--file", str(plan)], env) == 1
    assert "HTTP 403" in capsys.readouterr().err
    assert post.main(["--file", str(plan)], {k: v for k, v in env.items()
                                              if k != "SYSTEM_ACCESSTOKEN"}) == 2
    assert "SYSTEM_ACCESSTOKEN" in capsys.readouterr().err


def test_plan_comment_errors_print_no_logging_command(azure_devops: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An error body echoed by the server (which may quote the PR) is printed as one escaped
    line: it cannot set a variable for the steps after this one."""
    post = load_script("post_pr_comment")
    plan = tmp_path / "plan.md"
    plan.write_text("x")
    env = {"SYSTEM_COLLECTIONURI": azure_devops, "SYSTEM_TEAMPROJECT": "p",
           "BUILD_REPOSITORY_ID": "r", "SYSTEM_PULLREQUEST_PULLREQUESTID": "1",
           "SYSTEM_ACCESSTOKEN": "t"}
    FakeAzureDevOps.fail_with = 400
    FakeAzureDevOps.fail_message = \
        "bad\n##vso[task.setvariable variable=PACHD_ADDRESS]evil\r##[error]x"
    assert post.main(["--file", str(plan)], env) == 1
    err = capsys.readouterr().err
    assert "HTTP 400" in err and "evil" in err
    assert len(err.splitlines()) == 1 and "##" not in err


def test_pull_requests_preview_without_cluster_credentials(pipeline: dict[str, Any]) -> None:
    """Job Preview runs `pachsync preview` against the PR's target branch (HEAD^1 of the merge
    commit) with its base runs in Cache@2 and publishes the `preview` artifact, with no variable
    group and no env at all (it runs the PR's stage code); a fresh job posts preview.md as its
    own comment (marker pachsync-preview), with only the build's token, even when the preview
    failed (a failed job is what the comment must show)."""
    job, comment = jobs(pipeline)["Preview"], jobs(pipeline)["PreviewComment"]
    assert "variables" not in job and all("env" not in s for s in job["steps"])
    assert job["steps"][0]["fetchDepth"] == "2"
    (script,) = [s["script"] for s in job["steps"] if "pachsync preview" in s.get("script", "")]
    words = commands_of(script)[0]
    assert words[words.index("--base") + 1] == "HEAD^1"
    cache = words[words.index("--cache") + 1]
    cached = [s["inputs"]["path"] for s in job["steps"] if s.get("task") == "Cache@2"]
    assert cache.replace("XPipeline_Workspace", "$(Pipeline.Workspace)") in cached
    published = [s for s in job["steps"] if s.get("task") == "PublishPipelineArtifact@1"]
    assert [(s["inputs"]["artifact"], s["condition"]) for s in published] == \
        [("preview", "succeededOrFailed()")]
    assert comment["dependsOn"] == "Preview" and "succeededOrFailed()" in comment["condition"]
    assert "variables" not in comment
    posts = [s for s in comment["steps"] if "script" in s]
    assert [commands_of(s["script"])[0][:4] for s in posts] == \
        [["python3", ".ci/post_pr_comment.py", "--marker", "pachsync-preview"]]
    assert posts[0]["env"] == {"SYSTEM_ACCESSTOKEN": "$(System.AccessToken)"}
    assert [s.get("download") for s in comment["steps"] if "download" in s] == ["current"]


def test_plan_and_preview_comments_are_updated_separately(azure_devops: str,
                                                          tmp_path: Path) -> None:
    post = load_script("post_pr_comment")
    env = {"SYSTEM_COLLECTIONURI": azure_devops, "SYSTEM_TEAMPROJECT": "p",
           "BUILD_REPOSITORY_ID": "r", "SYSTEM_PULLREQUEST_PULLREQUESTID": "3",
           "SYSTEM_ACCESSTOKEN": "t"}
    md = tmp_path / "x.md"
    for text, marker in (("plan 1", []), ("preview 1", ["--marker", "pachsync-preview"]),
                         ("preview 2", ["--marker", "pachsync-preview"]), ("plan 2", [])):
        md.write_text(text)
        assert post.main(["--file", str(md), *marker], env) == 0
    methods = [c[0] for c in FakeAzureDevOps.calls]
    assert methods == ["GET", "POST", "GET", "POST", "GET", "PATCH", "GET", "PATCH"]
    contents = [t["comments"][0]["content"] for t in FakeAzureDevOps.threads]
    assert contents == ["<!-- pachsync-plan -->\nplan 2", "<!-- pachsync-preview -->\npreview 2"]
    with pytest.raises(SystemExit):
        post.main(["--file", str(md), "--marker", "x -->"], env)
