"""Stage augment: WGAN-GP maps for the rare classes of the training split (never val or test),
through the quality gate.

DVC runs ``python pipelines/augment.py``. Outputs: ``data/augmented`` (``synthetic.parquet`` and a
gallery), ``metrics/augment.json``, an MLflow run ``augment``.
"""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Train the GAN on the training split, generate and gate rare-class maps, log to MLflow."""
    import mlflow

    from waferflow.data.arrays import WaferArrays
    from waferflow.gan.augment import run_augment
    from waferflow.registry.tracking import configure_mlflow, flatten

    train = WaferArrays.from_parquet(layout.processed / "train.parquet")
    out = layout.augmented
    report = run_augment(train.grids, train.labels, params.augment, out, progress=progress)
    write_json(layout.metrics / "augment.json", report)
    experiment = configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_name="augment", experiment_id=experiment):
        mlflow.log_params({f"augment.{k}": v for k, v in flatten(params.augment.model_dump()).items()})
        mlflow.log_metric("synthetic_kept_total", report["kept_total"])
        for cls, c in report["classes"].items():
            mlflow.log_metrics(
                {
                    f"{cls}.generated": c["generated"],
                    f"{cls}.kept": c["kept"],
                    **{f"{cls}.dropped_{k}": v for k, v in c["dropped"].items()},
                    **{f"{cls}.{k}": v for k, v in c["distances"].items() if v is not None},
                }
            )
        mlflow.log_artifact(str(layout.metrics / "augment.json"))
        if (out / "gallery").is_dir():
            mlflow.log_artifacts(str(out / "gallery"), artifact_path="gallery")
        if report["generator"]:
            mlflow.set_tag("gan_version", report["generator"]["version"])
    return report


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "augment.json").read_text())


def summarise(r: dict) -> list[str]:
    lines = [f"{r['kept_total']} synthetic maps -> data/augmented/synthetic.parquet in {r['seconds']} s"]
    if not r["classes"]:
        lines.append(
            f"no class has fewer than augment.min_count={r['min_count']} training maps "
            f"({r['train_counts']}): no synthetic maps needed"
        )
    lines += [
        f"{cls}: {c['train_count']} real, generated {c['generated']}, kept {c['kept']}, dropped {c['dropped']}, "
        f"distances {c['distances']}"
        for cls, c in r["classes"].items()
    ]
    return lines


if __name__ == "__main__":
    from waferflow.stages import main

    main("augment")
