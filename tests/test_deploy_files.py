"""deploy/ is what users start from: the compose file parses, the Helm chart lints and
renders, every variable they set is one Sluice reads, and every process runs the
Procfile's command. No container engine runs here (see the README), so these check the
files as far as the machine allows; tests/test_replicas.py runs the same process layout
as real processes, which is the proof that it works.

docker-compose (Debian's, which parses without an engine) and helm (built once from the
Go module proxy by scripts/services.sh) are found on PATH or through SLUICE_HELM; each
test that needs one skips saying why when it is missing, except in CI, where both are
required.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from backend.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "sluice"
# Read by something other than Settings: the AWS SDK's own variables, and the Procfile's.
NOT_SETTINGS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "WEB_CONCURRENCY"}
SLUICE_SERVICES = ("migrate", "web-1", "web-2", "chat-worker", "ingest-worker")
# compose service (or chart process) → Procfile process.
PROCFILE_OF = {
    "web-1": "web",
    "web-2": "web",
    "chat-worker": "chat-worker",
    "ingest-worker": "ingest-worker",
}
CHART_PROCESS_OF = {"web": "web", "chatWorker": "chat-worker", "ingestWorker": "ingest-worker"}
SECRETS = ("SECRET_KEY", "POSTGRES_PASSWORD", "ELASTIC_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY")


def tool(name: str, env_var: str | None = None) -> str:
    path = (os.environ.get(env_var) if env_var else None) or shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (make test installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: required in CI")
    pytest.skip(reason)


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The compose file as docker-compose resolves it, with every secret filled in."""
    binary = tool("docker-compose")
    # A copy of deploy/, so that the `.env` it needs (from the template, every secret
    # filled in) is not written into the work tree.
    deploy = tmp_path_factory.mktemp("compose") / "deploy"
    shutil.copytree(DEPLOY, deploy)
    template = (DEPLOY / ".env.example").read_text()
    for name in SECRETS:
        template = template.replace(f"\n{name}=\n", f"\n{name}=test-{name.lower()}\n")
    (deploy / ".env").write_text(template)
    result = subprocess.run(
        [binary, "-f", str(deploy / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=deploy,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_runs_every_procfile_process_with_its_command(compose: dict) -> None:
    services = compose["services"]
    commands = procfile()
    for service, process in PROCFILE_OF.items():
        command = services[service]["command"]
        # docker-compose keeps `$$` (a literal `$` for the container's shell) escaped.
        text = command[-1].replace("$$", "$") if command[:2] == ["sh", "-c"] else " ".join(command)
        assert text == commands[process], service
    assert set(PROCFILE_OF.values()) == set(commands)


def test_compose_sets_only_variables_sluice_reads(compose: dict) -> None:
    """What compose.yaml sets for Sluice is a setting; every line of its .env template is
    either a setting or a variable compose.yaml itself interpolates."""
    known = setting_names() | NOT_SETTINGS
    raw = (DEPLOY / "compose.yaml").read_text()
    declared = yaml.safe_load(raw)["x-sluice"]["environment"]
    assert set(declared) - known == set()
    for service in SLUICE_SERVICES:
        assert compose["services"][service]["environment"]["REPLICA_MODE"] == "true"
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", raw)) | {"COMPOSE_PROJECT_NAME"}
    template = (DEPLOY / ".env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in template if line and not line.startswith("#")}
    assert names - known - interpolated == set()


def test_compose_has_the_scaled_out_layout_with_healthchecks(compose: dict) -> None:
    services = compose["services"]
    for name in (
        "nginx",
        "web-1",
        "web-2",
        "chat-worker",
        "ingest-worker",
        "postgres",
        "redis",
        "elasticsearch",
        "s3",
    ):
        assert "healthcheck" in services[name], name
    elastic = services["elasticsearch"]["environment"]
    assert elastic["xpack.security.enabled"] == "true"
    assert elastic["xpack.security.http.ssl.enabled"] == "true"
    # Nothing shared through a disk between Sluice processes: no volume holds DATA_DIR.
    for service in SLUICE_SERVICES:
        for volume in services[service].get("volumes", []):
            target = volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
            assert target == "/certs", (service, volume)
    upstreams = (DEPLOY / "nginx" / "sluice.conf").read_text()
    assert "server web-1:8000" in upstreams and "server web-2:8000" in upstreams


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_chart_sets_only_variables_sluice_reads_and_runs_the_procfile() -> None:
    values = chart_values()
    known = setting_names() | NOT_SETTINGS
    assert set(values["config"]) - known == set()
    assert set(values["secrets"]) - known == set()
    commands = procfile()
    for key, process in CHART_PROCESS_OF.items():
        assert values["processes"][key] == commands[process], key


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = tool("helm", "SLUICE_HELM")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def test_helm_lint_passes() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_template_renders_deployments_probes_and_streaming_ingress() -> None:
    result = helm(
        "template", "demo", str(CHART), "--set", "secrets.SECRET_KEY=x", "--namespace", "d"
    )
    assert result.returncode == 0, result.stderr
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    for kind, name in [
        ("Deployment", "demo-sluice-web"),
        ("Deployment", "demo-sluice-chat-worker"),
        ("Deployment", "demo-sluice-ingest-worker"),
        ("Service", "demo-sluice-web"),
        ("Ingress", "demo-sluice"),
        ("HorizontalPodAutoscaler", "demo-sluice-web"),
        ("PodDisruptionBudget", "demo-sluice-web"),
        ("ConfigMap", "demo-sluice-config"),
        ("Secret", "demo-sluice-secrets"),
        ("Job", "demo-sluice-migrate"),
    ]:
        assert (kind, name) in kinds, (kind, name)
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    web = by_name["Deployment", "demo-sluice-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["command"] == ["sh", "-c", procfile()["web"]]
    annotations = by_name["Ingress", "demo-sluice"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    for worker in ("chat-worker", "ingest-worker"):
        spec = by_name["Deployment", f"demo-sluice-{worker}"]["spec"]["template"]["spec"]
        assert spec["containers"][0]["command"] == ["sh", "-c", procfile()[worker]]
        assert spec["terminationGracePeriodSeconds"] > 30
