"""Stage evaluate: test split (and real data), plots, MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from waferflow.config import Params
from waferflow.stages.layout import Layout, write_json

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate", "real_summary"]


def sim_to_real(layout: Layout, real_dev: pd.DataFrame, plot_dir: Path) -> dict:
    """The generator's distance to the real dev lots, per class, with a side-by-side gallery: the
    generated test maps (at their own grid sizes) against the real ones."""
    from waferflow.data.records import grid_from_row, read_frame
    from waferflow.evaluation.sim_to_real import save_side_by_side, sim_to_real_gap

    generated = read_frame(layout.generated / "test.parquet")
    gen_grids = [grid_from_row(r) for r in generated.to_dict("records")]
    real_grids = [grid_from_row(r) for r in real_dev.to_dict("records")]
    gap = sim_to_real_gap(gen_grids, generated["label"], real_grids, real_dev["label"])
    gap["generated"], gap["real"] = "generated test set (data/generated/test.parquet)", f"real dev lots ({len(real_dev)} maps)"
    gap["gallery"] = str(save_side_by_side(gen_grids, list(generated["label"]), real_grids, list(real_dev["label"]),
                                           plot_dir / "sim_to_real_gallery.png").relative_to(layout.root))
    return gap


def real_summary(real: dict, model_version: str | None = None) -> dict:
    """``metrics/evaluate_real.json``: the real test lots' figures first (the headline), then the
    dev lots'; per part macro-F1, accuracy and per-class precision/recall/F1."""
    if not real.get("available"):
        return real
    out = {k: real[k] for k in ("available", "source", "split", "wafers", "lots")}
    out["model_version"] = model_version
    for part in ("test", "dev"):
        rep = real["parts"][part]
        if not rep.get("available"):
            out[part] = rep
            continue
        cls = rep["classification"]
        out[part] = {"wafers": rep["wafers"], "lots": rep["lots"], "macro_f1": cls["macro_f1"],
                     "accuracy": cls["accuracy"],
                     "min_recall": min(v["recall"] for v in cls["per_class"].values() if v["support"]),
                     "per_class": cls["per_class"], "confusion_matrix": cls["confusion_matrix"],
                     "plots": rep.get("plots", {})}
    return out


def evaluate(params: Params, layout: Layout = Layout()) -> dict:
    """Evaluate the trained weights on the test split (and real data when present); log to MLflow."""
    import mlflow

    from waferflow.evaluation.evaluate import evaluate_arrays, evaluate_real_data
    from waferflow.evaluation.real_maps import load_real_frame
    from waferflow.registry.pyfunc import load_weights
    from waferflow.registry.register import tag_version
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.data.arrays import WaferArrays

    run = layout.train_run()
    net = load_weights(layout.root / run["weights"])
    plot_dir = layout.reports / "evaluation"
    report = evaluate_arrays(net, WaferArrays.from_parquet(layout.processed / "test.parquet"), plot_dir,
                             n_worst=params.evaluate.worst_errors)
    frame, info = load_real_frame(layout.resolve(params.evaluate.real_data_dir))
    if frame is None:
        real = info
        write_json(layout.metrics / "sim_to_real.json", info)
    else:
        real = evaluate_real_data(net, frame, info, params.preprocess.image_size, plot_dir)
        write_json(layout.metrics / "sim_to_real.json", sim_to_real(layout, frame[frame["part"] == "dev"], plot_dir))
    cls, mask = report["classification"], report["mask"]
    headline = {"test_accuracy": cls["accuracy"], "test_macro_f1": cls["macro_f1"],
                "test_mean_iou": mask["mean_iou"], "test_mean_dice": mask["mean_dice"],
                "test_mean_iou_with_background": mask["mean_iou_with_background"]}
    write_json(layout.metrics / "evaluate.json", {**headline, "model_version": run["version"],
                                                    "per_class": cls["per_class"], "mask_per_class": mask["per_class"],
                                                    "roc_auc": cls["roc_auc"]})
    real_figures = real_summary(real, run["version"])
    write_json(layout.metrics / "evaluate_real.json", real_figures)
    write_json(layout.reports / "evaluation" / "report.json", {"test": report, "real": real})
    # The real lots' headline first: the figures a fab cares about (tagged on the version too).
    headline = {f"real_{part}_{k}": real_figures[part][k] for part in ("test", "dev")
                for k in ("macro_f1", "min_recall") if k in real_figures.get(part, {})} | headline
    configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_id=run["run_id"]):
        mlflow.log_metrics({k: v for k, v in headline.items() if v is not None})
        for name, per in cls["per_class"].items():
            mlflow.log_metric(f"test_recall_{name}", per["recall"])
        for part in ("test", "dev"):
            for name, per in real_figures.get(part, {}).get("per_class", {}).items():
                mlflow.log_metric(f"real_{part}_recall_{name}", per["recall"])
        for name in ("evaluate.json", "evaluate_real.json", "sim_to_real.json"):
            mlflow.log_artifact(str(layout.metrics / name), artifact_path="evaluation")
        mlflow.log_artifacts(str(plot_dir), artifact_path="evaluation")
    tag_version(run["model_name"], run["version"], {k: f"{v:.4f}" for k, v in headline.items() if v is not None})
    return headline
