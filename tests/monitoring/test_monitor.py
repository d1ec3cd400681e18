"""The monitor's steps on a served project: reference with the champion's predictions (cached per
version), the drift step on quiet, unshifted and shifted log windows, the shadow step and the
gate's live-traffic rules — against a real MLflow registry and real ONNX models."""

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import own_mlflow_store
from waferflow.config import load_params
from waferflow.inference.engine import InferenceEngine
from waferflow.layout import Layout
from waferflow.monitoring.windows import REFERENCE_CACHE, prediction_log, reference_window
from waferflow.monitoring.scenarios import stream
from waferflow.monitoring.shadow import ShadowEngine
from waferflow.orchestration.monitor import retrain_conf
from waferflow.registry.tracking import configure_mlflow
from waferflow.stages import stage


def _set(root: Path, section: str, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.setdefault(section, {}).update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def serve(root: Path, scenario: str, n: int, seed: int, shadow: bool = False) -> None:
    """Replay a stream through the champion (and the challenger in the shadow) into the project's log."""
    p = load_params(root / "params.yaml")
    configure_mlflow(p.mlflow, root)
    plog = prediction_log(p, root)
    champion = InferenceEngine.from_registry(p.mlflow.registered_model, "champion", prediction_log=plog)
    records = stream(scenario, n, seed, p.synth)
    if not shadow:
        champion.predict(records)
        return
    challenger = InferenceEngine.from_registry(p.mlflow.registered_model, "challenger", prediction_log=plog)
    with ShadowEngine(champion, challenger, max_pending=n) as engine:
        for start in range(0, n, 50):
            engine.predict(records[start : start + 50])


def drift_step(root: Path) -> dict:
    """The drift stage as the monitor DAG runs it: its values, and its summary lines as ``log``."""
    result = stage("drift").run(load_params(root / "params.yaml"), Layout(root))
    return {**result.values, "log": result.lines}


def shadow_step(root: Path) -> dict:
    result = stage("shadow").run(load_params(root / "params.yaml"), Layout(root))
    return {**result.values, "log": result.lines}


@pytest.fixture
def project(monitored_project, monkeypatch, tmp_path):
    """The served project with a fresh, empty prediction log and metrics folder for each test."""
    own_mlflow_store(monkeypatch)
    _set(monitored_project, "drift", prediction_log=str(tmp_path / "log"))
    _set(monitored_project, "gate", shadow_report=str(tmp_path / "shadow.json"), require_shadow=False)
    for name in ("drift.json", "drift.html"):
        (monitored_project / "metrics" / name).unlink(missing_ok=True)
    return monitored_project


def test_reference_has_the_champions_predictions_and_is_cached(project):
    p = load_params(project / "params.yaml")
    reference = project / "data/interim/validated.parquet"
    frame, info = reference_window(p, project, reference)
    champion = MlflowClient().get_model_version_by_alias(p.mlflow.registered_model, "champion").version
    assert len(frame) == 600 and info["reference_model_version"] == str(champion)
    assert frame["predicted_class"].notna().all() and frame["confidence"].between(0, 1).all()
    cache = Path(info["reference_cache"])
    assert cache.parent == project / REFERENCE_CACHE and cache.name.endswith(f"-v{champion}.parquet")
    stamp = cache.stat().st_mtime_ns
    again, _ = reference_window(p, project, reference)
    assert cache.stat().st_mtime_ns == stamp and again.equals(frame)  # read back, not recomputed
    features_only, info = reference_window(p, project, reference, predictions=False)
    assert "predicted_class" not in features_only and "no predictions" in info["prediction_drift"]


def test_drift_step_judges_the_champions_window_and_recommends_retraining_only_on_a_shift(project, tmp_path):
    quiet = drift_step(project)
    assert not quiet["judged"] and not quiet["retrain_recommended"] and "not judged: 0" in quiet["log"][0]

    serve(project, "unshifted", 300, seed=1, shadow=True)  # the challenger's shadow rows are not counted
    calm = drift_step(project)
    assert calm["judged"] and calm["n_current"] == 300 and not calm["retrain_recommended"], calm["log"]
    summary = json.loads((project / "metrics/drift.json").read_text())
    assert summary["predictions"]["predicted_class"]["drifted"] is False
    assert summary["novel"]["wafers"] == 300 and summary["novel"]["alert"] is False  # the log carries the triage
    assert summary["current_model_versions"] == {summary["reference_model_version"]: 300}
    assert (project / "metrics/drift.html").stat().st_size > 10_000
    run = MlflowClient().get_run(summary["mlflow_run_id"])
    assert run.info.run_name == "drift" and run.data.tags["retrain_recommended"] == "False"
    assert {"drift.json", "drift.html"} <= {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}

    _set(project, "drift", prediction_log=str(tmp_path / "shifted_log"))
    serve(project, "background", 300, seed=2)
    shifted = drift_step(project)
    assert shifted["judged"] and shifted["retrain_recommended"] and "fail_ratio" in shifted["drifted_features"]
    assert any(line.startswith("drift: RETRAIN RECOMMENDED") for line in shifted["log"])
    conf = retrain_conf(shifted, "scheduled__2026-11-24")
    assert conf["reason"].startswith("drift: ") and "fail_ratio" in conf["reason"]
    assert (
        "waferflow_monitor run scheduled__2026-11-24" in conf["reason"] and shifted["mlflow_run_id"] in conf["reason"]
    )


def test_shadow_step_reports_live_agreement_and_the_gate_uses_it(project, tmp_path):
    assert not shadow_step(project)["ran"]  # a challenger that has served nothing: nothing to report
    serve(project, "unshifted", 60, seed=3, shadow=True)
    done = shadow_step(project)
    report = json.loads((tmp_path / "shadow.json").read_text())
    assert done["ran"] and report["wafers"] == 60 and report["agreement"] == 1.0  # same weights
    assert report["champion"]["model_version"] != report["challenger"]["model_version"]
    assert done["gate"] is None and "60 live wafers" in done["log"][0]
    run = MlflowClient().get_run(report["mlflow_run_id"])
    assert run.info.run_name == "shadow" and run.data.metrics["wafers"] == 60 and run.data.metrics["agreement"] == 1.0

    # required shadow evidence: too few wafers -> the gate waits; enough -> it judges with the live rules
    _set(project, "gate", require_shadow=True, min_shadow_wafers=100)
    assert "waits for 100 shadow wafers (has 60)" in shadow_step(project)["log"][-1]
    # (latency bound made impossible so that the decision is a refusal and no alias moves)
    _set(project, "gate", min_shadow_wafers=50, min_shadow_agreement=0.99, max_latency_ratio=0.01)
    judged = shadow_step(project)
    _set(project, "gate", max_latency_ratio=5.0)
    p = load_params(project / "params.yaml")
    version = report["challenger"]["model_version"]
    tags = MlflowClient().get_model_version(p.mlflow.registered_model, version).tags
    assert judged["gate"]["decision"] == "refused" and judged["gate"]["aliases"]["challenger"] == version
    assert "gate (with the shadow rules): refused" in judged["log"][-1]
    assert tags["gate.rule.shadow_agreement"].startswith("PASS: challenger 1.0")
    assert tags["gate.rule.latency_p95_ms"].startswith("FAIL")
