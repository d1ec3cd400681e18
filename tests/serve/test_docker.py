"""The service image and the team's compose file, read as a Docker engine would read them (no
engine runs on these machines: the files' promises are checked, the images are not built)."""

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def _stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage (continued lines joined)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    stages, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            stages[current] = []
        stages[current].append((op.upper(), rest))
    return stages


def _last(instructions, op: str) -> str:
    return [rest for o, rest in instructions if o == op][-1]


def test_the_service_image_runs_as_a_user_and_is_healthy_only_when_ready():
    serve = _stages(DOCKER / "Dockerfile")["serve"]
    assert _last(serve, "USER") not in ("root", "0")
    health = _last(serve, "HEALTHCHECK")
    assert "/readyz" in health and "--start-period" in health
    cmd = _last(serve, "CMD")
    assert '"serve"' in cmd and '"0.0.0.0"' in cmd and '"/project/params.yaml"' in cmd


def test_the_mlflow_image_pins_what_the_lock_pins():
    locked = dict(line.split("==") for line in LOCK.read_text().splitlines() if "==" in line)
    stage = _stages(DOCKER / "mlflow.Dockerfile")["python:3.11-slim"]
    pip = " ".join(rest for op, rest in stage if op == "RUN" and "pip install" in rest)
    installed = re.findall(r"([A-Za-z0-9_.-]+)==([^\s]+)", pip)
    assert {name for name, _ in installed} >= {"mlflow", "boto3", "psycopg2-binary"}
    for name, version in installed:
        if name in locked:
            assert locked[name] == version, (
                f"{name}: {version} in mlflow.Dockerfile, {locked[name]} in requirements.lock"
            )
    assert _last(stage, "USER") != "root"


def test_compose_wires_the_service_to_mlflow_on_postgres_and_s3_with_secrets_only_from_env():
    text = (DOCKER / "compose.yaml").read_text()
    services = yaml.safe_load(text)["services"]
    serve, mlflow = services["serve"], services["mlflow"]
    assert serve["build"]["target"] == "serve"
    assert serve["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert serve["environment"]["WAFERFLOW_API_KEYS"].startswith("${WAFERFLOW_API_KEYS:?")  # no key, no start
    assert serve["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert "--artifacts-destination s3://mlflow" in mlflow["command"] and "mlflow:5000" in mlflow["command"]
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    # every password and key is a variable from docker/.env, which git ignores
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|KEY", key):
                assert str(value).startswith("${"), f"{name}.{key} is written into compose.yaml"
    assert "/docker/.env" in (DOCKER.parent / ".gitignore").read_text().splitlines()
    example = dict(
        line.split("=", 1)
        for line in (DOCKER / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert set(re.findall(r"\$\{(\w+):\?", text)) <= set(example)
