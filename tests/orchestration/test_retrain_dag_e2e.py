"""`airflow dags test waferflow_retrain` end to end on a copy of the project with the small e2e
configuration: a triggered run with a UI parameter goes through every stage and the gate's
decision lands in the registry; a run fed bad data stops at validate and trains nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import copy_project, run_ok
from waferflow.orchestration.retrain import ALL_STAGES, runs_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def airflow_project(tmp_path_factory):
    base = tmp_path_factory.mktemp("airflow")
    project = copy_project(base / "project")
    env = {
        "AIRFLOW_HOME": str(base / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "WAFERFLOW_PROJECT_DIR": str(project),
    }
    run_ok(["airflow", "db", "migrate"], base, env)
    return project, env


def _dags_test(env: dict, conf: dict, cwd: Path) -> tuple[int, str]:
    full = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **env}
    full["PATH"] = f"{Path(sys.executable).parent}:{full['PATH']}"
    done = subprocess.run(
        ["airflow", "dags", "test", "waferflow_retrain", "-c", json.dumps(conf)],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
    )
    return done.returncode, done.stdout + done.stderr


def _registry(project: Path):
    import mlflow

    uri = f"sqlite:///{project / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)  # other tests set a process-wide registry


def test_triggered_retrain_runs_every_stage_and_the_gate_decides(airflow_project):
    project, env = airflow_project
    params_before = (project / "params.yaml").read_bytes()
    rc, out = _dags_test(env, {"epochs": 2}, project.parent)
    assert rc == 0, out[-5000:]
    for stage in ALL_STAGES:
        assert f"dvc repro --single-item {stage}" in out and f"Running stage '{stage}'" in out
    assert "waferflow retrain: completed" in out and "param train.max_epochs: 1 -> 2" in out
    assert "[al_query] annotation queue, round 1:" in out and "by coreset" in out
    assert "[gate] gate: version" in out  # each stage's own summary, as `waferflow <stage>` prints it
    (ws,) = list(runs_dir(project).iterdir())
    gate = json.loads((ws / "metrics/gate.json").read_text())
    assert gate["decision"] == "champion"
    name = yaml.safe_load((project / "params.yaml").read_text())["mlflow"]["registered_model"]
    champion = _registry(project).get_model_version_by_alias(name, "champion")
    assert str(champion.version) == gate["challenger_version"] and champion.tags["gate.decision"] == "champion"
    assert json.loads((ws / "models/train_run.json").read_text())["epochs_trained"] == 2  # the UI value was used
    assert f"mlflow model_version: http://127.0.0.1:5000/#/models/{name}/versions/{champion.version}" in out
    # the user's checkout is untouched: same params.yaml, still no dvc.lock, no outputs
    assert (project / "params.yaml").read_bytes() == params_before
    assert not (project / "dvc.lock").exists() and not (project / "models").exists()


def test_bad_data_stops_the_run_before_training(airflow_project, tmp_path):
    project, env = airflow_project
    maps = np.ones((12, 20, 20), np.uint8)
    maps[:, 5, 5] = 7  # not a die code: ingest keeps it as 255, the validation suite rejects the wafer
    np.savez(tmp_path / "bad.npz", maps=maps, labels=np.array(["Center"] * 12))
    name = yaml.safe_load((project / "params.yaml").read_text())["mlflow"]["registered_model"]
    versions_before = len(_registry(project).search_model_versions(f"name='{name}'"))
    rc, out = _dags_test(env, {"data_sources": [str(tmp_path / "bad.npz")]}, project.parent)
    assert rc != 0
    assert "Stage 'generate' is cached" in out  # unchanged stage restored from the shared DVC run cache
    assert "STOPPED at validate: data-quality gate failed: 12 of 12 records rejected" in out
    assert "train=upstream_failed" in out and "Running stage 'train'" not in out
    assert len(_registry(project).search_model_versions(f"name='{name}'")) == versions_before
