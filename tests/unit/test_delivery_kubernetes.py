"""deploy/ checked offline: every manifest against Kubernetes' OpenAPI schemas (kubernetes-validate,
strict), the kustomization lists them all (and renders, when kubectl is installed), and the
Deployment keeps its promises: one replica, Recreate, probes on the agent's real endpoints,
non-root with a read-only root filesystem, secrets only referenced, and a command line that the
real `pachsync agent` parser accepts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
K8S_VERSION = "1.30.0"  # the oldest AKS version still in support when this was written


def kubernetes_validate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def resources() -> dict[str, dict[str, Any]]:
    """kind -> the manifest, for every resource the kustomization lists."""
    out = {}
    for name in kustomization()["resources"]:
        doc = yaml.safe_load((DEPLOY / name).read_text())
        out[doc["kind"]] = doc
    return out


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert set(resources()) == {"Namespace", "ServiceAccount", "ConfigMap", "Deployment",
                                "Service", "NetworkPolicy"}
    assert not list(DEPLOY.rglob("*secret*")), "secrets are created by hand, never committed"


@pytest.fixture(scope="module")
def validation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One kubernetes-validate run (it loads the schemas for seconds) over: every listed file,
    a copy with a misspelt field (the check must bite), and the kustomize rendering if
    kubectl is installed. Returns file -> that file's output lines."""
    tmp = tmp_path_factory.mktemp("k8s")
    files = [str(DEPLOY / name) for name in kustomization()["resources"]]
    bad = tmp / "misspelt.yaml"
    bad.write_text((DEPLOY / "deployment.yaml").read_text().replace("readinessProbe:",
                                                                    "readynessProbe:"))
    files.append(str(bad))
    if shutil.which("kubectl"):
        rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True,
                                  text=True, timeout=120)
        assert rendered.returncode == 0, rendered.stderr
        (tmp / "rendered.yaml").write_text(rendered.stdout)
        files.append(str(tmp / "rendered.yaml"))
    out = kubernetes_validate(*files)
    lines = (out.stdout + out.stderr).splitlines()
    return {f: "\n".join(line for line in lines if f" {f} " in f" {line} ") for f in files}


def test_every_manifest_is_valid_kubernetes(validation: dict[str, str]) -> None:
    for name in kustomization()["resources"]:
        report = validation[str(DEPLOY / name)]
        assert "passed" in report and "ERROR" not in report, report


def test_the_validator_rejects_a_misspelt_field(validation: dict[str, str]) -> None:
    report = next(v for k, v in validation.items() if k.endswith("misspelt.yaml"))
    assert "readynessProbe" in report and "passed" not in report


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_the_kustomization_renders_and_validates(validation: dict[str, str]) -> None:
    path = next(k for k in validation if k.endswith("rendered.yaml"))
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    assert len(docs) == 6 and all(d["metadata"].get("namespace", "pachsync") == "pachsync"
                                  for d in docs)
    assert validation[path].count("passed") == 6 and "ERROR" not in validation[path]


def test_deployment_runs_one_agent_non_root_read_only() -> None:
    deploy = resources()["Deployment"]
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {"/var/cache/pachsync", "/tmp"} <= set(mounts)
    assert all("emptyDir" in volumes[name] for name in mounts.values())
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    server = (ROOT / "agent" / "runner" / "server.py").read_text()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f'"{path}"' in server, f"the agent serves no {path}"


def test_secrets_are_referenced_never_inlined() -> None:
    (container,) = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert secret_refs == {"PACHSYNC_GIT_TOKEN": "pachsync-git",
                           "PACH_PYTHON_AUTH_TOKEN": "pachsync-pachyderm",
                           "PACHSYNC_BASIC_AUTH": "pachsync-webhook",
                           "PACHSYNC_WEBHOOK_SECRET": "pachsync-webhook",
                           "PACHSYNC_AZURE_TOKEN": "pachsync-notify",
                           "PACHSYNC_NOTIFY_SECRET": "pachsync-notify"}
    config = resources()["ConfigMap"]["data"]
    assert {"PACHSYNC_SOURCE", "PACHSYNC_BRANCH", "PACHSYNC_INTERVAL", "PACHSYNC_PRUNE"} <= set(
        config)
    assert not any(word in key.lower() for key in config for word in ("token", "secret", "pass"))


def test_network_policy_lets_in_only_the_agent_port() -> None:
    policy = resources()["NetworkPolicy"]["spec"]
    labels = resources()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == ["http"]
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert {53, 443, 30650} <= egress


def test_service_exposes_webhook_and_metrics_for_prometheus() -> None:
    service = resources()["Service"]
    notes = service["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http" and notes["prometheus.io/port"] == str(port["port"])
    labels = resources()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("prune", ["true", "false"])
def test_container_command_is_accepted_by_pachsync_agent(prune: str) -> None:
    """The container's argv (no shell) parsed by the real `pachsync` parser, then completed from
    the ConfigMap's env exactly as `pachsync agent` does at start-up."""
    from agent.cli import build_parser
    from agent.commands.agent import apply_env

    (container,) = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python3", "-m", "agent"]
    assert "/bin/sh" not in str(container["args"])
    assert [e for e in container["envFrom"] if e["configMapRef"]["name"] == "pachsync-agent"]
    env = dict(resources()["ConfigMap"]["data"], PACHSYNC_PRUNE=prune)
    args = apply_env(build_parser().parse_args(container["args"]), env)
    assert args.source == env["PACHSYNC_SOURCE"] and args.branch == env["PACHSYNC_BRANCH"]
    assert args.specs_path == env["PACHSYNC_SPECS_PATH"]
    assert args.interval == float(env["PACHSYNC_INTERVAL"])
    assert args.prune is (prune == "true")
    assert args.cache_dir is not None and str(args.cache_dir) == "/var/cache/pachsync"
    assert args.listen == "0.0.0.0:8080" and args.log_format == "json"
    port = container["ports"][0]["containerPort"]
    assert args.listen.endswith(f":{port}")


def test_the_guide_creates_exactly_the_secrets_the_deployment_reads() -> None:
    import re

    guide = (ROOT / "docs" / "deploying.md").read_text()
    created: set[tuple[str, str]] = set()
    for command in re.sub(r"\\\n", " ", guide).splitlines():  # join continued shell lines
        match = re.search(r"create secret generic ([\w-]+)(.*)", command)
        if match:
            created |= {(match[1], k) for k in re.findall(r"--from-literal=([\w-]+)", match[2])}
    (container,) = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    read = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container["env"]}
    assert created == read
