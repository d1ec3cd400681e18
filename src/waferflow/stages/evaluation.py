"""Stage evaluate: test split (and real data), plots, MLflow."""

from __future__ import annotations


from waferflow.config import Params
from waferflow.stages.layout import Layout, write_json

__all__ = ["evaluate"]


def evaluate(params: Params, layout: Layout = Layout()) -> dict:
    """Evaluate the trained weights on the test split (and real data when present); log to MLflow."""
    import mlflow

    from waferflow.evaluation.evaluate import evaluate_arrays, evaluate_real_data
    from waferflow.registry.pyfunc import load_weights
    from waferflow.registry.register import tag_version
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.training.data import WaferArrays

    run = layout.train_run()
    net = load_weights(layout.root / run["weights"])
    plot_dir = layout.reports / "evaluation"
    report = evaluate_arrays(net, WaferArrays.from_parquet(layout.processed / "test.parquet"), plot_dir,
                             n_worst=params.evaluate.worst_errors)
    real = evaluate_real_data(net, layout.resolve(params.evaluate.real_data_dir), params.preprocess.image_size,
                              plot_dir)
    cls, mask = report["classification"], report["mask"]
    headline = {"test_accuracy": cls["accuracy"], "test_macro_f1": cls["macro_f1"],
                "test_mean_iou": mask["mean_iou"], "test_mean_dice": mask["mean_dice"],
                "test_mean_iou_with_background": mask["mean_iou_with_background"]}
    write_json(layout.metrics / "evaluate.json", {**headline, "model_version": run["version"],
                                                    "per_class": cls["per_class"], "mask_per_class": mask["per_class"],
                                                    "roc_auc": cls["roc_auc"]})
    write_json(layout.metrics / "evaluate_real.json", real if not real.get("available") else {
        "available": True, "source": real["source"], "wafers": real["wafers"],
        "accuracy": real["classification"]["accuracy"], "macro_f1": real["classification"]["macro_f1"],
        "per_class": real["classification"]["per_class"], "mean_iou": real["mask"]["mean_iou"]})
    write_json(layout.reports / "evaluation" / "report.json", {"test": report, "real": real})
    configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_id=run["run_id"]):
        mlflow.log_metrics({k: v for k, v in headline.items() if v is not None})
        for name, per in cls["per_class"].items():
            mlflow.log_metric(f"test_recall_{name}", per["recall"])
        if real.get("available"):
            mlflow.log_metric("real_macro_f1", real["classification"]["macro_f1"])
        mlflow.log_artifacts(str(plot_dir), artifact_path="evaluation")
        mlflow.log_artifact(str(layout.metrics / "evaluate.json"), artifact_path="evaluation")
    tag_version(run["model_name"], run["version"], {k: f"{v:.4f}" for k, v in headline.items() if v is not None})
    return headline
