"""Stage train: fit the two-headed U-Net with Lightning, calibrate its temperature on the
validation split, log everything to MLflow and register the version — with the patterns stage's
trees and density CNN (``data/patterns``) inside it, so that the registered pyfunc serves the blended class.

DVC runs ``python pipelines/train.py``. Outputs: ``models/`` (checkpoint, ``weights.pt``,
``train_run.json``), ``metrics/train.json``. Inside a retrain DAG run, the run's id and reason
(``airflow_run.json`` in the workspace, written by its prepare task) are tagged on the MLflow run.
"""

from __future__ import annotations

import json
from pathlib import Path

from waferflow.config import Params
from waferflow.data.records import read_frame
from waferflow.fileio import write_json
from waferflow.layout import Layout


def run(params: Params, layout: Layout) -> dict:
    """Fit; on rank 0 log everything to MLflow and register the model."""
    import mlflow

    from waferflow.data.arrays import WaferArrays
    from waferflow.models.predictor import WaferPredictor
    from waferflow.patterns.trees import PatternClassifier
    from waferflow.registry.pyfunc import load_initial_weights, save_weights
    from waferflow.registry.register import log_and_register
    from waferflow.registry.tracking import data_version, git_commit, log_params_record
    from waferflow.training.lightning_module import WaferLitModule

    provenance = {
        "git_commit": git_commit(layout.root),
        "data_version": data_version(layout.processed, layout.root),
        **layout.run_context(),
    }
    # The pattern trees travel in the registered model (its pyfunc serves the blended class): read
    # them before the fit, so that a missing patterns stage fails now, not after hours of training.
    patterns_dir = layout.root / "data/patterns"
    trees = PatternClassifier.from_dir(patterns_dir)
    extra = []
    if params.train.use_synthetic:
        synthetic = layout.synthetic
        if not synthetic.is_file():
            raise RuntimeError(
                f"train.use_synthetic is true but {synthetic} is missing: run the augment stage "
                "(dvc repro augment) or set train.use_synthetic: false"
            )
        extra = [synthetic]
        provenance["synthetic_maps"] = str(len(read_frame(synthetic)))
        print(
            f"train: {provenance['synthetic_maps']} GAN maps from {synthetic} join the training split; they "
            "carry no per-die mask, so only the class loss learns from them (mask loss ignored)",
            flush=True,
        )
    init_state = None
    if params.train.init_from:  # fine-tuning: e.g. the generated-map champion on a fab's real maps
        initial, provenance["init_from"] = load_initial_weights(params.train.init_from, layout.root)
        if initial.config != params.model:
            raise RuntimeError(
                f"train.init_from {provenance['init_from']} is a {initial.config.encoder_name} U-Net of another "
                f"shape than model in params.yaml ({initial.config} vs {params.model}): fine-tuning needs the same"
            )
        init_state = initial.net.state_dict()
        print(f"train: starting from {provenance['init_from']} (fine-tuning)", flush=True)
    if params.train.pseudo_label_threshold > 0:  # semi-supervised: a teacher labels the unlabeled split
        extra, init_state = self_training(params, layout, provenance, extra, init_state)
    summary = _fit(params, layout, provenance, extra, init_state)
    if summary["run_id"] is None:  # not rank 0 of a distributed run: rank 0 does the bookkeeping
        return summary
    best = WaferLitModule.load_from_checkpoint(summary["checkpoint"], map_location="cpu")
    val = WaferArrays.from_parquet(layout.processed / "val.parquet")
    predictor = WaferPredictor(best.net)
    summary["temperature"] = round(predictor.calibrate(val.grids, val.labels), 6)  # served confidences calibrated
    weights = save_weights(predictor, layout.models / "weights.pt")
    with mlflow.start_run(run_id=summary["run_id"]):
        log_params_record(params)
        mlflow.log_metrics(
            {
                "best_val_macro_f1": summary["best_val_macro_f1"],
                "train_seconds": summary["train_seconds"],
                "peak_rss_mb": summary["peak_rss_mb"],
                "temperature": summary["temperature"],
            }
        )
    registered = log_and_register(
        predictor,
        params.mlflow.registered_model,
        summary["run_id"],
        {
            **provenance,
            "run_id": summary["run_id"],
            "best_val_macro_f1": f"{summary['best_val_macro_f1']:.4f}",
            "temperature": str(summary["temperature"]),
        },
        val.grids,
        patterns_dir if trees is not None else None,
    )
    run_info = {**summary, **registered, **provenance, "weights": str(weights.relative_to(layout.root))}
    run_info["checkpoint"] = str(Path(summary["checkpoint"]).resolve().relative_to(layout.root.resolve()))
    write_json(layout.models / "train_run.json", run_info)
    write_json(
        layout.metrics / "train.json",
        {
            k: run_info[k]
            for k in (
                "best_val_macro_f1",
                "epochs_trained",
                "train_seconds",
                "peak_rss_mb",
                "temperature",
                "version",
                "alias",
            )
        },
    )
    return run_info


def _fit(params: Params, layout: Layout, tags: dict, extra: list, init_state: dict | None) -> dict:
    """One Lightning fit of the configured model on the processed splits (+ ``extra`` training maps)."""
    from waferflow.training.trainer import fit

    return fit(
        params.model,
        params.train,
        layout.processed,
        layout.models,
        params.mlflow,
        layout.root,
        run_tags=tags,
        extra_train=extra,
        init_state=init_state,
    )


def self_training(params: Params, layout: Layout, provenance: dict, extra: list, init_state: dict | None):
    """Fit a teacher, pseudo-label the unlabeled split with its calibrated confidence, and return
    the student's extra training maps and starting weights (the teacher's)."""
    import pyarrow as pa

    from waferflow.data.arrays import WaferArrays
    from waferflow.data.records import SCHEMA, write_records
    from waferflow.models.predictor import WaferPredictor
    from waferflow.training.lightning_module import WaferLitModule
    from waferflow.training.pseudo_labels import pseudo_label, summary

    threshold = params.train.pseudo_label_threshold
    teacher_run = _fit(
        params, layout, {**provenance, "role": "teacher (pseudo-labels for the next run)"}, extra, init_state
    )
    teacher = WaferPredictor(WaferLitModule.load_from_checkpoint(teacher_run["checkpoint"], map_location="cpu").net)
    val = WaferArrays.from_parquet(layout.processed / "val.parquet")
    teacher.calibrate(val.grids, val.labels)  # the threshold is on calibrated confidences
    pool = read_frame(layout.processed / "unlabeled.parquet")
    pseudo = pseudo_label(teacher, pool, threshold)
    path = layout.models / "pseudo_labels.parquet"
    write_records(pa.Table.from_pandas(pseudo[SCHEMA.names], schema=SCHEMA, preserve_index=False), path)
    report = summary(pseudo, len(pool), threshold)
    provenance.update(
        teacher_run_id=str(teacher_run["run_id"]),
        pseudo_labeled=str(report["pseudo_labeled"]),
        pseudo_per_class=json.dumps(report["pseudo_per_class"]),
    )
    print(
        f"train: self-training: {report['pseudo_labeled']} of {len(pool)} unlabeled maps pseudo-labeled at calibrated "
        f"confidence >= {threshold} ({report['pseudo_per_class']}); the student starts from the teacher",
        flush=True,
    )
    return [*extra, path], teacher.net.state_dict()


def result(layout: Layout) -> dict:
    return json.loads((layout.models / "train_run.json").read_text())


def summarise(info: dict) -> list[str]:
    if not info.get("run_id"):
        return [f"train: rank {info.get('global_rank')} of a distributed run done; rank 0 registers the model"]
    return [
        f"trained {info['epochs_trained']} epochs in {info['train_seconds']} s, best val macro-F1 "
        f"{info['best_val_macro_f1']:.4f}; registered {info['model_name']} v{info['version']} as @{info['alias']} "
        f"(MLflow run {info['run_id']})"
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("train")
