"""Stage evaluate: the trained model on the generated test split, and on real labeled maps when
``evaluate.real_data_dir`` holds some (test lots and dev lots apart, never pooled).

DVC runs ``python pipelines/evaluate.py``. Outputs: ``metrics/evaluate.json`` (generated test
split), ``metrics/evaluate_real.json`` (real lots: the headline), ``metrics/sim_to_real.json``
(the generator's distance to the real dev lots), plots in ``reports/evaluation``; all logged to
the train stage's MLflow run and tagged on the model version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout

if TYPE_CHECKING:
    import pandas as pd


def sim_to_real(layout: Layout, real_dev: pd.DataFrame, plot_dir: Path) -> dict:
    """The generator's distance to the real dev lots, per class, with a side-by-side gallery: the
    generated test maps (at their own grid sizes) against the real ones."""
    from waferflow.data.records import grid_from_row, read_frame
    from waferflow.evaluation.sim_to_real import save_side_by_side, sim_to_real_gap

    generated = read_frame(layout.generated / "test.parquet")
    gen_grids = [grid_from_row(r) for r in generated.to_dict("records")]
    real_grids = [grid_from_row(r) for r in real_dev.to_dict("records")]
    gap = sim_to_real_gap(gen_grids, generated["label"], real_grids, real_dev["label"])
    gap["generated"], gap["real"] = (
        "generated test set (data/generated/test.parquet)",
        f"real dev lots ({len(real_dev)} maps)",
    )
    gap["gallery"] = str(
        save_side_by_side(
            gen_grids,
            list(generated["label"]),
            real_grids,
            list(real_dev["label"]),
            plot_dir / "sim_to_real_gallery.png",
        ).relative_to(layout.root)
    )
    return gap


def per_source(net, test, patterns=None) -> dict:
    """When the test split mixes sources (generated maps beside a fab's files), each source's
    figures apart — pooled figures would hide how the model does on the real ones."""
    from waferflow.evaluation.evaluate import evaluate_arrays

    parts = test.by_source()
    if len(parts) < 2:
        return {}
    out = {}
    for source, part in parts.items():
        cls = evaluate_arrays(net, part, patterns=patterns)["classification"]
        out[source] = {
            "wafers": len(part),
            "lots": int(part.frame["lot_id"].nunique()),
            "macro_f1": cls["macro_f1"],
            "accuracy": cls["accuracy"],
            "recall": {c: v["recall"] for c, v in cls["per_class"].items() if v["support"]},
        }
    return {"per_source": out}


def run(params: Params, layout: Layout) -> dict:
    """Evaluate the trained weights on the test split (and real data when present); log to MLflow."""
    import mlflow

    from waferflow.data.arrays import WaferArrays
    from waferflow.evaluation.evaluate import evaluate_arrays, evaluate_real_data, real_summary
    from waferflow.evaluation.real_maps import load_real_frame
    from waferflow.patterns.trees import PatternClassifier, served_class
    from waferflow.registry.pyfunc import load_weights
    from waferflow.registry.register import tag_version
    from waferflow.registry.tracking import configure_mlflow

    trained = layout.train_run()
    net = load_weights(layout.root / trained["weights"])
    plot_dir = layout.reports / "evaluation"
    patterns = PatternClassifier.from_dir(layout.root / "data/patterns")  # None: the U-Net alone serves
    test = WaferArrays.from_parquet(layout.processed / "test.parquet")
    report = evaluate_arrays(net, test, plot_dir, n_worst=params.evaluate.worst_errors, patterns=patterns)
    frame, info = load_real_frame(layout.resolve(params.evaluate.real_data_dir))
    if frame is None:
        real = info
        write_json(layout.metrics / "sim_to_real.json", info)
    else:
        real = evaluate_real_data(net, frame, info, params.preprocess.image_size, plot_dir, patterns)
        write_json(layout.metrics / "sim_to_real.json", sim_to_real(layout, frame[frame["part"] == "dev"], plot_dir))
    cls, mask = report["classification"], report["mask"]
    headline = {
        "test_accuracy": cls["accuracy"],
        "test_macro_f1": cls["macro_f1"],
        "test_mean_iou": mask["mean_iou"],
        "test_mean_dice": mask["mean_dice"],
        "test_mean_iou_with_background": mask["mean_iou_with_background"],
    }
    write_json(
        layout.metrics / "evaluate.json",
        {
            **headline,
            "model_version": trained["version"],
            "per_class": cls["per_class"],
            "mask_per_class": mask["per_class"],
            "roc_auc": cls["roc_auc"],
            "served": served_class(patterns),
            **({"components": report["components"]} if "components" in report else {}),
            **per_source(net, test, patterns),
        },
    )
    real_figures = real_summary(real, trained["version"])
    if real_figures.get("available"):
        real_figures["served"] = served_class(patterns)
    write_json(layout.metrics / "evaluate_real.json", real_figures)
    write_json(layout.reports / "evaluation" / "report.json", {"test": report, "real": real})
    # The real lots' headline first: the figures a fab cares about (tagged on the version too).
    headline = {
        f"real_{part}_{k}": real_figures[part][k]
        for part in ("test", "dev")
        for k in ("macro_f1", "min_recall")
        if k in real_figures.get(part, {})
    } | headline
    configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({k: v for k, v in headline.items() if v is not None})
        for name, per in cls["per_class"].items():
            mlflow.log_metric(f"test_recall_{name}", per["recall"])
        for part in ("test", "dev"):
            for name, per in real_figures.get(part, {}).get("per_class", {}).items():
                mlflow.log_metric(f"real_{part}_recall_{name}", per["recall"])
        for name in ("evaluate.json", "evaluate_real.json", "sim_to_real.json", "patterns.json"):
            mlflow.log_artifact(str(layout.metrics / name), artifact_path="evaluation")
        mlflow.log_artifacts(str(plot_dir), artifact_path="evaluation")
    tag_version(
        trained["model_name"], trained["version"], {k: f"{v:.4f}" for k, v in headline.items() if v is not None}
    )
    return headline


def result(layout: Layout) -> dict:
    """The headline as the stage returned it: real lots first, then the generated test split."""
    real = json.loads((layout.metrics / "evaluate_real.json").read_text())
    test = json.loads((layout.metrics / "evaluate.json").read_text())
    return {
        **{
            f"real_{part}_{k}": real[part][k]
            for part in ("test", "dev")
            for k in ("macro_f1", "min_recall")
            if k in real.get(part, {})
        },
        **{k: v for k, v in test.items() if k.startswith("test_")},
    }


def summarise(headline: dict) -> list[str]:
    first = (
        "real test lots: macro-F1 {real_test_macro_f1:.4f}, min class recall {real_test_min_recall:.4f}; ".format(
            **headline
        )
        if "real_test_macro_f1" in headline
        else "no real labeled maps; "
    )
    first += f"generated test split: macro-F1 {headline['test_macro_f1']:.4f}"
    return [first, *(f"{key}: {value}" for key, value in headline.items())]


if __name__ == "__main__":
    from waferflow.stages import main

    main("evaluate")
