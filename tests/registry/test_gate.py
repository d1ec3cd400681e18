"""The promotion gate: rules on measured values, and aliases moving in a real MLflow registry."""

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from waferflow.config import load_params
from waferflow.inference.export import export_onnx
from waferflow.models.config import ModelConfig
from waferflow.models.wafer_unet import WaferUNet
from waferflow.registry.gate import GateConfig, decide, promote, rollback, run_gate
from waferflow.registry.register import log_and_register
from waferflow.registry.tracking import MlflowConfig, configure_mlflow
from waferflow.training.data import WaferArrays
from waferflow.training.lightning_module import WaferLitModule
from waferflow.training.trainer import fit

NAME = "gate-test-model"


def _measured(f1, recalls, latency, iou=0.5):
    return {"test": {"macro_f1": f1, "recall": recalls, "mask_iou": iou}, "real": None, "p95_latency_ms": latency}


def test_rules_on_measured_values():
    champion = _measured(0.90, {"Center": 0.9, "Scratch": 0.8}, 4.0)
    cfg = GateConfig()
    ok, rules = decide(champion, _measured(0.897, {"Center": 0.88, "Scratch": 0.85}, 4.5), True, cfg)
    assert ok and {r["rule"] for r in rules} >= {"test_macro_f1", "test_class_recall", "onnx_parity", "latency_p95_ms"}
    assert not decide(champion, _measured(0.894, {"Center": 0.9, "Scratch": 0.8}, 4.0), True, cfg)[0]   # F1 -0.006
    bad_recall = decide(champion, _measured(0.95, {"Center": 0.99, "Scratch": 0.76}, 4.0), True, cfg)[1]
    assert [r["rule"] for r in bad_recall if not r["passed"]] == ["test_class_recall"]
    assert "Scratch" in str(next(r for r in bad_recall if r["rule"] == "test_class_recall")["limit"])
    assert not decide(champion, _measured(0.95, {"Center": 0.9, "Scratch": 0.8}, 4.9), True, cfg)[0]  # 1.225x slower
    assert not decide(champion, _measured(0.95, {"Center": 0.9, "Scratch": 0.8}, 4.0), False, cfg)[0]  # parity failed
    with_real = {**champion, "real": {"macro_f1": 0.7, "recall": {"Loc": 0.7}, "mask_iou": None}}
    challenger = {**_measured(0.95, {"Center": 0.9, "Scratch": 0.8}, 4.0),
                  "real": {"macro_f1": 0.6, "recall": {"Loc": 0.7}, "mask_iou": None}}
    ok, rules = decide(with_real, challenger, True, cfg)
    assert not ok and [r["rule"] for r in rules if not r["passed"]] == ["real_macro_f1"]


@pytest.fixture(scope="module")
def registry(tiny_project, tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{root / 'gate.db'}", artifact_root=str(root / "artifacts"),
                       experiment="gate-test", registered_model=NAME)
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure_mlflow(cfg, root)
    params = load_params(tiny_project / "params.yaml")
    data = tiny_project / "data/processed"
    val, test = WaferArrays.from_parquet(data / "val.parquet"), WaferArrays.from_parquet(data / "test.parquet")
    summary = fit(params.model, params.train.model_copy(update={"max_epochs": 2}), data, root / "ckpt", cfg, root)
    good = WaferLitModule.load_from_checkpoint(summary["checkpoint"], map_location="cpu").net.eval()
    torch.manual_seed(3)
    degraded = WaferUNet(ModelConfig.model_validate(params.model.model_dump())).eval()  # 0 epochs

    def register(net, tag):
        with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("gate-test").experiment_id,
                              run_name=tag) as run:
            pass
        info = log_and_register(net, NAME, run.info.run_id, {"kind": tag}, val.grids)
        out = root / f"onnx-{info['version']}"
        report = export_onnx(net, out, val.grids, val.labels, test.grids, test.labels, calibration_size=16,
                             max_int8_f1_drop=1.0)
        with mlflow.start_run(run_id=run.info.run_id):
            mlflow.log_artifacts(str(out), artifact_path="onnx")
        MlflowClient().set_model_version_tag(NAME, info["version"], "onnx_parity_passed", str(report["parity"]["passed"]))
        return info["version"]

    yield {"good": good, "degraded": degraded, "register": register, "test": test}
    mp.undo()


def aliases():
    return {k: str(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def test_gate_refuses_a_degraded_challenger_promotes_a_good_one_and_rollback_restores(registry):
    test, register = registry["test"], registry["register"]
    cfg = GateConfig(latency_runs=60, max_latency_ratio=2.0)  # same architecture: latency differs by noise only
    v1 = register(registry["good"], "trained")
    first = run_gate(NAME, v1, test, cfg)
    assert first["decision"] == "champion" and aliases() == {"champion": v1}

    v2 = register(registry["degraded"], "untrained")
    assert aliases()["challenger"] == v2
    refused = run_gate(NAME, v2, test, cfg)
    assert refused["decision"] == "refused" and "test_macro_f1" in refused["reason"]
    assert aliases()["champion"] == v1  # nothing moved
    tags = MlflowClient().get_model_version(NAME, v2).tags
    assert tags["gate.decision"] == "refused" and tags["gate.rule.test_macro_f1"].startswith("FAIL")

    v3 = register(registry["good"], "trained-again")
    promoted = run_gate(NAME, v3, test, cfg)
    assert promoted["decision"] == "promoted", promoted["reason"]
    assert aliases() == {"champion": v3, "previous": v1}  # registering v3 moved "challenger" to it; promotion cleared it
    assert MlflowClient().get_model_version(NAME, v3).tags["gate.decision"] == "promoted"
    again = run_gate(NAME, v3, test, cfg)  # a re-run keeps the recorded decision and its reason
    assert again["decision"] == "promoted" and again["already_decided"] and promoted["reason"] in again["reason"]
    assert again["aliases"] == aliases()
    assert MlflowClient().get_model_version(NAME, v3).tags["gate.reason"] == promoted["reason"]

    restored = rollback(NAME)
    assert restored == {"champion": v1, "demoted": v3} and aliases()["champion"] == v1 and "previous" not in aliases()
    with pytest.raises(ValueError, match="no 'previous'"):
        rollback(NAME)

    manual = promote(NAME, v2, reason="operator override for a test")
    assert manual == {"champion": v2, "previous": v1}
    tags = MlflowClient().get_model_version(NAME, v2).tags
    assert tags["gate.decision"] == "manual_promote" and tags["gate.reason"] == "operator override for a test"
