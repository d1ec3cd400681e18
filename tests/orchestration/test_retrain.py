"""The retrain DAG's building blocks (no scheduler): run workspaces, trigger overrides, summary;
and the DAG file itself, loaded through Airflow's DagBag in a subprocess with its own AIRFLOW_HOME."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, run_ok
from waferflow.layout import Layout
from waferflow.orchestration.retrain import (
    ALL_STAGES,
    RETRAIN_STAGES,
    SIDE_STAGES,
    apply_overrides,
    format_summary,
    prepare_workspace,
    runs_dir,
    summarise,
    trigger_defaults,
)


def test_the_dag_runs_every_dvc_stage_in_dvc_yaml_order():
    stages = list(yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"])
    assert sorted(ALL_STAGES) == sorted(stages)
    assert [s for s in stages if s in RETRAIN_STAGES] == list(RETRAIN_STAGES)
    for side, after in SIDE_STAGES.items():
        assert stages.index(side) > stages.index(after)


@pytest.fixture
def user_project(tmp_path):
    """A small checkout: git repo, params.yaml, a user file in data/raw, an ignored file."""
    root = tmp_path / "checkout"
    (root / "data/raw").mkdir(parents=True)
    (root / "params.yaml").write_text(
        "# the user's comments\ntrain: {max_epochs: 7}\nmodel: {encoder_name: resnet18}\n"
        "mlflow: {experiment: wf-test}\n"
    )
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    (root / ".dvc").mkdir()
    (root / ".dvc/config").write_text("[core]\n    autostage = true\n")
    (root / "data/raw/lot1.csv").write_text("lot,wafer,x,y,bin\n")
    (root / ".gitignore").write_text("/secret\n/mlflow.db\n/mlruns\n/.cache\n")
    (root / "secret").write_text("not part of the working tree")
    run_ok(["git", "init", "-q"], root)
    return root


def test_trigger_defaults_are_what_params_yaml_says(user_project):
    assert trigger_defaults(user_project) == {
        "data_sources": ["data/generated", "data/raw"],
        "epochs": 7,
        "encoder": "resnet18",
        "force_promote": False,
        "reason": "",
    }


def test_overrides_resolve_paths_convert_values_and_list_changes(tmp_path):
    params = {"ingest": {"sources": ["data/generated", "data/raw"]}, "train": {"max_epochs": 7}}
    changes = apply_overrides(
        params,
        {"data_sources": ["data/raw/", "../fab/exports", "/abs/LSWMD.pkl"], "epochs": "3", "force_promote": "false"},
        tmp_path / "proj",
    )
    assert params["ingest"]["sources"] == ["data/raw", str((tmp_path / "fab/exports").resolve()), "/abs/LSWMD.pkl"]
    assert params["train"]["max_epochs"] == 3 and params["gate"]["force_promote"] is False
    assert {c["param"] for c in changes} == {"ingest.sources", "train.max_epochs", "gate.force_promote"}
    assert apply_overrides(params, {"epochs": 3}, tmp_path / "proj") == []  # nothing new: nothing changed
    with pytest.raises(ValueError, match="epochs='many'"):
        apply_overrides(params, {"epochs": "many"}, tmp_path)
    with pytest.raises(ValueError, match=r"unknown trigger parameter\(s\) \['epoch'\]"):
        apply_overrides(params, {"epoch": 3}, tmp_path)
    with pytest.raises(ValueError, match="data_sources is empty"):
        apply_overrides(params, {"data_sources": [" "]}, tmp_path)


def test_prepare_copies_the_checkout_applies_overrides_and_never_touches_the_users_files(user_project):
    before = {p: p.read_bytes() for p in (user_project / "params.yaml", user_project / "dvc.lock")}
    record = prepare_workspace(
        user_project,
        "manual__2026-11-23T10:00:00+00:00",
        {"epochs": 2, "encoder": "resnet34", "reason": "drift: fail_ratio moved"},
    )
    ws = runs_dir(user_project) / "manual__2026-11-23T10_00_00_00_00"
    assert record["workspace"] == str(ws)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    assert params["train"]["max_epochs"] == 2 and params["model"]["encoder_name"] == "resnet34"
    assert [c["param"] for c in record["changes"]] == ["train.max_epochs", "model.encoder_name"]  # reason: none
    assert record["reason"] == "drift: fail_ratio moved" and "WAFERFLOW_RETRAIN_REASON" not in record["env"]
    assert Layout(Path(record["workspace"])).run_context()["retrain_reason"] == "drift: fail_ratio moved"
    assert (ws / "data/raw/lot1.csv").is_file() and not (ws / "secret").exists()
    assert (ws / ".git").is_dir()
    assert str(user_project / ".dvc" / "cache") in (ws / ".dvc/config.local").read_text()
    assert record["env"]["PYTHONPATH"] == str(ws / "src")
    assert record["env"]["MLFLOW_TRACKING_URI"] == f"sqlite:///{user_project / 'mlflow.db'}"
    assert json.loads((ws / "airflow_run.json").read_text())["changes"] == record["changes"]
    (ws / "dvc.lock").write_text("rewritten by dvc in the workspace\n")  # must not reach the user's lock
    assert {p: p.read_bytes() for p in before} == before
    import mlflow

    assert mlflow.MlflowClient(record["env"]["MLFLOW_TRACKING_URI"]).get_experiment_by_name("wf-test") is not None


def test_prepare_refuses_invalid_parameters_before_anything_runs(user_project):
    with pytest.raises(ValueError, match="encoder_depth|invalid params.yaml"):
        (user_project / "params.yaml").write_text("model: {encoder_depth: many}\n")
        prepare_workspace(user_project, "r1", {})


def test_old_workspaces_are_pruned(user_project):
    for i in range(4):
        prepare_workspace(user_project, f"run{i}", {}, keep=2)
    assert sorted(p.name for p in runs_dir(user_project).iterdir()) == ["run2", "run3"]


def _workspace(tmp_path, validation=None, gate=None):
    ws = tmp_path / "ws"
    (ws / "metrics").mkdir(parents=True)
    (ws / "models").mkdir()
    (ws / "reports/validation").mkdir(parents=True)
    (ws / "airflow_run.json").write_text(
        json.dumps(
            {"changes": [{"param": "train.max_epochs", "from": 26, "to": 2}], "reason": "drift: fail_ratio moved"}
        )
    )
    if validation:
        (ws / "reports/validation/validation.json").write_text(json.dumps(validation))
    if gate:
        (ws / "metrics/gate.json").write_text(json.dumps(gate))
        (ws / "metrics/evaluate.json").write_text(
            json.dumps({"test_macro_f1": 0.91, "test_accuracy": 0.93, "test_mean_iou": 0.8, "per_class": {}})
        )
        (ws / "metrics/evaluate_real.json").write_text(json.dumps({"available": False}))
        (ws / "models/train_run.json").write_text(
            json.dumps(
                {"model_name": "wf", "version": "4", "run_id": "abc", "epochs_trained": 2, "best_val_macro_f1": 0.9}
            )
        )
    return ws


def test_summary_of_a_completed_run_has_the_gate_decision_metrics_and_links(tmp_path):
    gate = {
        "decision": "refused",
        "reason": "test_macro_f1 0.91 < champion 0.95 - 0.005",
        "challenger_version": "4",
        "champion_version": "3",
        "aliases": {"champion": "3"},
        "rules": [
            {
                "rule": "test_macro_f1",
                "passed": False,
                "challenger": 0.91,
                "champion": 0.95,
                "limit": ">= champion - 0.005",
            }
        ],
    }
    ws = _workspace(tmp_path, gate=gate)
    (ws / "metrics/al_query.json").write_text(
        json.dumps(
            {
                "selected": 100,
                "round": 2,
                "strategy": "hybrid",
                "pool_size": 900,
                "total_seconds": 3.2,
                "queue": "data/al/queue/queue.csv",
                "selected_predicted_classes": {"Loc": 100},
            }
        )
    )
    out = summarise(ws, {s: "success" for s in ALL_STAGES}, "http://mlflow:5000/", experiment_id="7")
    assert out["annotation_queue"] == {
        "size": 100,
        "round": 2,
        "strategy": "hybrid",
        "path": str(ws / "data/al/queue/queue.csv"),
    }
    assert out["ok"] and out["gate"]["decision"] == "refused" and out["metrics"]["test_macro_f1"] == 0.91
    assert out["mlflow"] == {
        "train_run": "http://mlflow:5000/#/experiments/7/runs/abc",
        "model_version": "http://mlflow:5000/#/models/wf/versions/4",
    }
    text = format_summary(out)
    assert "[gate] gate: version 4 refused: test_macro_f1 0.91 < champion" in text  # as `waferflow gate` says it
    assert "[gate] champion before: v3" in text and "[gate]   FAIL test_macro_f1: challenger 0.91" in text
    assert "[al_query] annotation queue, round 2: 100 of 900 unlabeled wafers by hybrid" in text
    assert "[evaluate] no real labeled maps; generated test split: macro-F1 0.9100" in text
    assert "param train.max_epochs: 26 -> 2" in text and "triggered because: drift: fail_ratio moved" in text


def test_summary_of_a_run_stopped_by_data_quality_says_where_and_why(tmp_path):
    stale = {
        "decision": "promoted",
        "reason": "an earlier run",
        "challenger_version": "9",
        "champion_version": "8",
        "aliases": {"champion": "9"},
    }  # the checkout's committed metrics, copied into the workspace
    ws = _workspace(tmp_path, validation={"checked": 40, "rejected": 40, "max_reject_fraction": 0.05}, gate=stale)
    states = {
        "generate": "success",
        "ingest": "success",
        "validate": "failed",
        "split": "upstream_failed",
        "al_query": "upstream_failed",
    }
    out = summarise(ws, states)
    assert not out["ok"] and out["stopped_at"] == "validate"
    assert out["reason"].startswith("data-quality gate failed: 40 of 40 records rejected (limit 0.05)")
    assert out["stages"]["train"] == "not run"
    assert "gate" not in out and "metrics" not in out and "model" not in out
    assert "STOPPED at validate" in format_summary(out)


DAG_PROBE = r"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag("dags")
dag = bag.dags.get("waferflow_retrain")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "schedule": str(dag.schedule), "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
    "params": {k: dag.params[k] for k in dag.params},
    "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
    "commands": {t.task_id: getattr(t, "bash_command", None) for t in dag.tasks},
    "retries": {t.task_id: t.retries for t in dag.tasks},
    "timeouts": {t.task_id: t.execution_timeout.total_seconds() if t.execution_timeout else None for t in dag.tasks},
    "trigger_rules": {t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in dag.tasks},
    "monitor": {d.dag_id: {"schedule": str(d.schedule), "catchup": d.catchup, "max_active_runs": d.max_active_runs,
                           "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks},
                           "triggers": {t.task_id: getattr(t, "trigger_dag_id", None) for t in d.tasks},
                           "types": {t.task_id: type(t).__name__ for t in d.tasks},
                           "commands": {t.task_id: getattr(t, "bash_command", None) for t in d.tasks}}
                for d in [bag.dags.get("waferflow_monitor")] if d is not None}.get("waferflow_monitor"),
}))
"""


@pytest.fixture(scope="module")
def dag_info(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
    }
    out = subprocess.run(
        [sys.executable, "-c", DAG_PROBE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_files_import_without_errors(dag_info):
    assert dag_info["errors"] == {}
    assert {"waferflow_retrain", "waferflow_monitor"} <= set(dag_info["dags"])


def test_monitor_dag_is_daily_and_triggers_the_retrain_only_after_the_drift_decision(dag_info):
    mon = dag_info["monitor"]
    assert mon["schedule"] == "@daily" and mon["catchup"] is False and mon["max_active_runs"] == 1
    assert mon["upstream"] == {
        "drift_check": [],
        "retrain_needed": ["drift_check"],
        "trigger_retrain": ["retrain_needed"],
        "shadow_report": [],
        "index_refresh": [],
    }
    assert mon["triggers"]["trigger_retrain"] == "waferflow_retrain"
    assert mon["types"]["trigger_retrain"] == "TriggerDagRunOperator"
    assert mon["types"]["retrain_needed"] == "_ShortCircuitDecoratedOperator"
    # the same execution model as the retrain DAG: the stage table's entries, run in the ML environment
    assert mon["types"]["drift_check"] == mon["types"]["shadow_report"] == "BashOperator"
    assert "python -m waferflow.stages drift --json" in mon["commands"]["drift_check"]
    assert "python -m waferflow.stages shadow --json" in mon["commands"]["shadow_report"]
    assert "python -m waferflow.stages index_log --json" in mon["commands"]["index_refresh"]
    assert "reason" in dag_info["params"]  # the retrain form takes the monitor's reason


def test_retrain_dag_schedule_order_and_policies(dag_info):
    assert dag_info["schedule"] == "@monthly" and dag_info["catchup"] is False and dag_info["max_active_runs"] == 1
    chain = ["prepare", *RETRAIN_STAGES]
    expected = {t: ([chain[i - 1]] if i else []) for i, t in enumerate(chain)}
    expected.update({"al_query": ["novelty"], "index": ["evaluate"], "summary": ["al_query", "gate", "index"]})
    assert dag_info["upstream"] == expected
    for stage in ALL_STAGES:  # each task publishes what its stage wrote as its XCom
        assert (
            f"dvc repro --single-item {stage} && python -m waferflow.stages {stage} --result\n"
            in dag_info["commands"][stage]
        )
        assert dag_info["timeouts"][stage] > 0
    assert dag_info["retries"]["validate"] == 0 and dag_info["retries"]["train"] >= 1
    assert dag_info["trigger_rules"]["summary"] == "all_done"


def test_retrain_dag_params_default_to_params_yaml(dag_info):
    assert dag_info["params"] == trigger_defaults(PROJECT_ROOT)
