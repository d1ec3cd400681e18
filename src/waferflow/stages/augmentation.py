"""Stage augment: GAN maps for the rare classes of the training split (never val or test)."""

from __future__ import annotations

from waferflow.config import Params
from waferflow.stages.layout import Layout, write_json

__all__ = ["augment", "AUGMENTED_DIR"]

AUGMENTED_DIR = "data/augmented"  # as in dvc.yaml


def augment(params: Params, layout: Layout = Layout(), progress: bool = True) -> dict:
    """Train the WGAN-GP on the training split, generate and gate rare-class maps, log to MLflow."""
    import mlflow

    from waferflow.gan.augment import run_augment
    from waferflow.registry.tracking import configure_mlflow, flatten
    from waferflow.data.arrays import WaferArrays

    train = WaferArrays.from_parquet(layout.processed / "train.parquet")
    out = layout / AUGMENTED_DIR
    report = run_augment(train.grids, train.labels, params.augment, out, progress=progress)
    write_json(layout.metrics / "augment.json", report)
    experiment = configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_name="augment", experiment_id=experiment):
        mlflow.log_params({f"augment.{k}": v for k, v in flatten(params.augment.model_dump()).items()})
        mlflow.log_metric("synthetic_kept_total", report["kept_total"])
        for cls, c in report["classes"].items():
            mlflow.log_metrics({f"{cls}.generated": c["generated"], f"{cls}.kept": c["kept"],
                                **{f"{cls}.dropped_{k}": v for k, v in c["dropped"].items()},
                                **{f"{cls}.{k}": v for k, v in c["distances"].items() if v is not None}})
        mlflow.log_artifact(str(layout.metrics / "augment.json"))
        if (out / "gallery").is_dir():
            mlflow.log_artifacts(str(out / "gallery"), artifact_path="gallery")
        if report["generator"]:
            mlflow.set_tag("gan_version", report["generator"]["version"])
    return report
