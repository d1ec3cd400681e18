"""Stage train: fit, calibrate (temperature on the validation split), log to MLflow, register."""

from __future__ import annotations

import os
from pathlib import Path

from waferflow.config import Params
from waferflow.data.records import read_frame
from waferflow.stages.layout import Layout, write_json

__all__ = ["train", "SYNTHETIC"]

SYNTHETIC = "data/augmented/synthetic.parquet"  # the augment stage's output, as in dvc.yaml


def train(params: Params, layout: Layout = Layout(), params_path: Path = Path("params.yaml")) -> dict:
    """Fit the two-headed U-Net; on rank 0 log everything to MLflow and register the model."""
    from waferflow.config import raw_params
    from waferflow.models.predictor import WaferPredictor
    from waferflow.registry.pyfunc import save_weights
    from waferflow.registry.register import log_and_register
    from waferflow.registry.tracking import data_version, flatten, git_commit
    from waferflow.data.arrays import WaferArrays
    from waferflow.training.lightning_module import WaferLitModule
    from waferflow.training.trainer import fit
    import mlflow

    provenance = {"git_commit": git_commit(layout.root), "data_version": data_version(layout.processed, layout.root)}
    for env, tag in (("WAFERFLOW_AIRFLOW_RUN_ID", "airflow_run_id"), ("WAFERFLOW_RETRAIN_REASON", "retrain_reason")):
        if os.environ.get(env):  # set by the retrain DAG: which run, and why it was started
            provenance[tag] = os.environ[env][:5000]
    extra = []
    if params.train.use_synthetic:
        synthetic = layout / SYNTHETIC
        if not synthetic.is_file():
            raise RuntimeError(f"train.use_synthetic is true but {synthetic} is missing: run the augment stage "
                               "(dvc repro augment) or set train.use_synthetic: false")
        extra = [synthetic]
        provenance["synthetic_maps"] = str(len(read_frame(synthetic)))
        print(f"train: {provenance['synthetic_maps']} GAN maps from {SYNTHETIC} join the training split; they "
              "carry no per-die mask, so only the class loss learns from them (mask loss ignored)", flush=True)
    summary = fit(params.model, params.train, layout.processed, layout.models, params.mlflow, layout.root,
                  run_tags=provenance, extra_train=extra)
    if summary["run_id"] is None:  # not rank 0 of a distributed run: rank 0 does the bookkeeping
        return summary
    best = WaferLitModule.load_from_checkpoint(summary["checkpoint"], map_location="cpu")
    val = WaferArrays.from_parquet(layout.processed / "val.parquet")
    predictor = WaferPredictor(best.net)
    summary["temperature"] = round(predictor.calibrate(val.grids, val.labels), 6)  # served confidences calibrated
    weights = save_weights(predictor, layout.models / "weights.pt")
    with mlflow.start_run(run_id=summary["run_id"]):
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(raw_params(params_path)).items()})
        mlflow.log_metrics({"best_val_macro_f1": summary["best_val_macro_f1"], "train_seconds": summary["train_seconds"],
                            "peak_rss_mb": summary["peak_rss_mb"], "temperature": summary["temperature"]})
    registered = log_and_register(predictor, params.mlflow.registered_model, summary["run_id"],
                                  {**provenance, "run_id": summary["run_id"],
                                   "best_val_macro_f1": f"{summary['best_val_macro_f1']:.4f}",
                                   "temperature": str(summary["temperature"])}, val.grids)
    run_info = {**summary, **registered, **provenance, "weights": str(weights.relative_to(layout.root))}
    run_info["checkpoint"] = str(Path(summary["checkpoint"]).resolve().relative_to(layout.root.resolve()))
    write_json(layout.models / "train_run.json", run_info)
    write_json(layout.metrics / "train.json", {k: run_info[k] for k in (
        "best_val_macro_f1", "epochs_trained", "train_seconds", "peak_rss_mb", "temperature", "version", "alias")})
    return run_info
