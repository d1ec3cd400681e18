"""`airflow dags test waferflow_monitor` end to end on a served project: a shifted production
stream in the prediction log ends in a triggered `waferflow_retrain` run whose conf says why; an
unshifted one does not trigger anything. The shadow report runs beside (a challenger exists), and
the index refresh adds the logged production wafers to the similar-wafer index."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, own_mlflow_store, run_ok
from tests.monitoring.test_monitor import _set, serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def airflow_env(monitored_project, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_monitor")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "WAFERFLOW_PROJECT_DIR": str(monitored_project),
    }
    run_ok(["airflow", "db", "migrate"], home, env)
    run_ok(["airflow", "dags", "reserialize"], home, env)  # the trigger's target must be known to Airflow
    return env


@pytest.fixture(scope="module")
def labeled_index(monitored_project):
    """The labeled similar-wafer index the DAG's index_refresh adds production wafers to; removed
    after (the other tests of the served project expect none)."""
    from waferflow.config import load_params
    from waferflow.layout import Layout
    from waferflow.registry.pyfunc import save_weights
    from waferflow.stages import stage
    from waferflow.training.lightning_module import WaferLitModule

    made = [
        monitored_project / p for p in ("models/weights.pt", "models/train_run.json", "data/index", "data/index_log")
    ]
    net = WaferLitModule.load_from_checkpoint(monitored_project / "models/best.ckpt", map_location="cpu").net.eval()
    save_weights(net, made[0])
    made[1].write_text(json.dumps({"version": "1", "weights": "models/weights.pt"}))
    stage("index").run(load_params(monitored_project / "params.yaml"), Layout(monitored_project), progress=False)
    yield
    for path in made:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _airflow(env: dict, *args: str) -> tuple[int, str]:
    full = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **env}
    full["PATH"] = f"{Path(sys.executable).parent}:{full['PATH']}"
    done = subprocess.run(["airflow", *args], cwd=env["AIRFLOW_HOME"], env=full, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def _retrain_runs(env: dict) -> dict[str, dict]:
    """run id -> conf of every waferflow_retrain run in the Airflow metadata database."""
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute("SELECT run_id, conf FROM dag_run WHERE dag_id = 'waferflow_retrain'").fetchall()
    return {run_id: json.loads(conf or "{}") for run_id, conf in rows}


@pytest.mark.parametrize("scenario, triggers", [("unshifted", False), ("background", True)])
def test_monitor_triggers_a_retrain_on_a_shifted_stream_only(
    monitored_project, airflow_env, labeled_index, tmp_path, monkeypatch, scenario, triggers
):
    own_mlflow_store(monkeypatch)
    _set(monitored_project, "drift", prediction_log=str(tmp_path / "log"))
    _set(monitored_project, "gate", shadow_report=str(tmp_path / "shadow.json"), require_shadow=False)
    serve(monitored_project, scenario, 300, seed=11, shadow=True)
    before = _retrain_runs(airflow_env)
    rc, out = _airflow(airflow_env, "dags", "test", "waferflow_monitor")
    assert rc == 0, out[-6000:]
    assert "shadow: challenger v" in out and (tmp_path / "shadow.json").is_file()
    logged = json.loads((monitored_project / "metrics/index_log.json").read_text())  # index_refresh
    assert logged["wafers"] == 300 and "300 production wafers of the prediction log" in out
    runs = _retrain_runs(airflow_env)
    if triggers:
        assert "drift: RETRAIN RECOMMENDED" in out and "decision: trigger waferflow_retrain, because" in out
        assert "Dag Run triggered successfully" in out
        (new,) = [conf for run_id, conf in runs.items() if run_id not in before]
        assert new["reason"].startswith("drift: ") and "fail_ratio" in new["reason"]
        assert "waferflow_monitor run" in new["reason"]
    else:
        assert "drift: no retraining needed" in out and "decision: no retrain, because" in out
        assert "Dag Run triggered successfully" not in out and len(runs) == len(before)
