"""The data stages of the pipeline, as called by ``pipelines/*.py`` (DVC) and the CLI.

Each function takes the typed :class:`~waferflow.config.Params` and the stage's paths (the
defaults are the layout ``dvc.yaml`` declares), does its work through the library, writes its
outputs and returns a small summary dict. A stage that cannot do its job raises.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from waferflow.config import Params
from waferflow.data.ingest import IngestReport, ingest
from waferflow.data.records import SCHEMA, read_frame, table_to_records, write_records
from waferflow.data.split import resize_frame, split_counts, split_frame
from waferflow.data.validation import validate_frame, write_validation_outputs
from waferflow.synth.dataset import generate_dataset
from waferflow.viz import save_gallery

__all__ = ["Layout", "generate", "ingest_stage", "validate", "split", "train", "evaluate", "export", "gate"]


@dataclass(frozen=True)
class Layout:
    """Where each stage reads and writes, relative to the project root (as in ``dvc.yaml``)."""

    root: Path = Path(".")

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    @property
    def generated(self) -> Path: return self / "data/generated"
    @property
    def ingested(self) -> Path: return self / "data/interim/ingested.parquet"
    @property
    def validated(self) -> Path: return self / "data/interim/validated.parquet"
    @property
    def processed(self) -> Path: return self / "data/processed"
    @property
    def quarantine(self) -> Path: return self / "data/quarantine"
    @property
    def reports(self) -> Path: return self / "reports"
    @property
    def figures(self) -> Path: return self / "reports/figures"
    @property
    def metrics(self) -> Path: return self / "metrics"
    @property
    def models(self) -> Path: return self / "models"
    @property
    def export(self) -> Path: return self / "export"

    def train_run(self) -> dict:
        """What the train stage recorded: run id, registered version, weights path ..."""
        return json.loads((self.models / "train_run.json").read_text())

    def resolve(self, path: str | Path) -> Path:
        """A path from params.yaml: absolute as given, relative to the project root otherwise."""
        return Path(path) if Path(path).is_absolute() else self.root / path


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def generate(params: Params, layout: Layout = Layout(), progress: bool = True) -> dict:
    """Generate the default data set: labeled pool, unlabeled pool, fixed test set, gallery."""
    sets = generate_dataset(params.synth, progress=progress)
    counts = {}
    for name, records in sets.items():
        write_records(records, layout.generated / f"{name}.parquet")
        counts[name] = {"total": len(records), **dict(sorted(Counter(
            r.label or r.attrs.get("true_label", "unlabeled") for r in records).items()))}
    save_gallery(sets["labeled"], layout.figures / "generated_gallery.png", per_class=params.synth.gallery_per_class,
                 title="generated wafer maps (labeled pool) with defect masks")
    _write_json(layout.metrics / "generate.json", counts)
    return counts


def ingest_stage(params: Params, layout: Layout = Layout(), sources: list[str] | None = None,
                 progress: bool = True) -> IngestReport:
    """Ingest every configured source into the canonical table; rejects to quarantine."""
    srcs = sources if sources is not None else [str(layout / s) for s in params.ingest.sources]
    report = ingest(srcs, layout.ingested, layout.quarantine / "ingest", layout.reports / "ingest.json",
                    options=params.ingest.parser_options(), progress=progress)
    if report.records == 0:
        raise RuntimeError(f"ingest produced no wafers from {srcs}; see {layout.quarantine / 'ingest/rejects.csv'}")
    return report


def validate(params: Params, layout: Layout = Layout()) -> dict:
    """Run the great-expectations suite; keep valid wafers, quarantine the rest."""
    frame = read_frame(layout.ingested)
    cfg = params.validate_.config()
    outcome = validate_frame(frame, cfg)
    return write_validation_outputs(outcome, cfg, layout.validated, layout.quarantine / "validate",
                                    layout.reports / "validation")


def split(params: Params, layout: Layout = Layout(), progress: bool = True) -> dict:
    """Resize to the model size and split train / val / test / unlabeled."""
    cfg = params.split_config()
    frame = resize_frame(read_frame(layout.validated), cfg.image_size, progress=progress)
    parts = split_frame(frame, cfg)
    for name, part in parts.items():
        write_records(pa.Table.from_pandas(part[SCHEMA.names], schema=SCHEMA, preserve_index=False),
                      layout.processed / f"{name}.parquet")
    counts = split_counts(parts)
    _write_json(layout.metrics / "split.json", counts)
    train_sample = table_to_records(parts["train"].groupby("label", group_keys=False).head(6))
    save_gallery(train_sample, layout.figures / "split_gallery.png", per_class=6,
                 title=f"training split as the model sees it ({cfg.image_size[0]}x{cfg.image_size[1]})")
    return counts


def train(params: Params, layout: Layout = Layout(), params_path: Path = Path("params.yaml")) -> dict:
    """Fit the two-headed U-Net; on rank 0 log everything to MLflow and register the model."""
    from waferflow.config import raw_params
    from waferflow.registry.pyfunc import save_weights
    from waferflow.registry.register import log_and_register
    from waferflow.registry.tracking import data_version, flatten, git_commit
    from waferflow.training.data import WaferArrays
    from waferflow.training.lightning_module import WaferLitModule
    from waferflow.training.trainer import fit
    import mlflow

    provenance = {"git_commit": git_commit(layout.root), "data_version": data_version(layout.processed, layout.root)}
    summary = fit(params.model, params.train, layout.processed, layout.models, params.mlflow, layout.root,
                  run_tags=provenance)
    if summary["run_id"] is None:  # not rank 0 of a distributed run: rank 0 does the bookkeeping
        return summary
    best = WaferLitModule.load_from_checkpoint(summary["checkpoint"], map_location="cpu")
    weights = save_weights(best.net, layout.models / "weights.pt")
    with mlflow.start_run(run_id=summary["run_id"]):
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(raw_params(params_path)).items()})
        mlflow.log_metrics({"best_val_macro_f1": summary["best_val_macro_f1"], "train_seconds": summary["train_seconds"],
                            "peak_rss_mb": summary["peak_rss_mb"]})
    example = WaferArrays.from_parquet(layout.processed / "val.parquet").grids
    registered = log_and_register(best.net, params.mlflow.registered_model, summary["run_id"],
                                  {**provenance, "run_id": summary["run_id"],
                                   "best_val_macro_f1": f"{summary['best_val_macro_f1']:.4f}"}, example)
    run_info = {**summary, **registered, **provenance, "weights": str(weights.relative_to(layout.root))}
    run_info["checkpoint"] = str(Path(summary["checkpoint"]).resolve().relative_to(layout.root.resolve()))
    _write_json(layout.models / "train_run.json", run_info)
    _write_json(layout.metrics / "train.json", {k: run_info[k] for k in (
        "best_val_macro_f1", "epochs_trained", "train_seconds", "peak_rss_mb", "version", "alias")})
    return run_info


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
    _write_json(layout.metrics / "evaluate.json", {**headline, "model_version": run["version"],
                                                    "per_class": cls["per_class"], "mask_per_class": mask["per_class"],
                                                    "roc_auc": cls["roc_auc"]})
    _write_json(layout.metrics / "evaluate_real.json", real if not real.get("available") else {
        "available": True, "source": real["source"], "wafers": real["wafers"],
        "accuracy": real["classification"]["accuracy"], "macro_f1": real["classification"]["macro_f1"],
        "per_class": real["classification"]["per_class"], "mean_iou": real["mask"]["mean_iou"]})
    _write_json(layout.reports / "evaluation" / "report.json", {"test": report, "real": real})
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


def export(params: Params, layout: Layout = Layout()) -> dict:
    """ONNX export of the trained weights: checker, parity on the test split, temperature, INT8."""
    import mlflow

    from waferflow.inference.export import ParityError, export_onnx
    from waferflow.registry.pyfunc import load_weights
    from waferflow.registry.register import tag_version
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.training.data import WaferArrays

    run = layout.train_run()
    val = WaferArrays.from_parquet(layout.processed / "val.parquet")
    test = WaferArrays.from_parquet(layout.processed / "test.parquet")
    cfg = params.export
    failure = None
    try:
        report = export_onnx(load_weights(layout.root / run["weights"]), layout.export, val.grids, val.labels,
                             test.grids, test.labels, cfg.tolerance, cfg.max_int8_f1_drop, cfg.calibration_size)
    except ParityError as exc:
        failure = exc
        report = json.loads((layout.export / "export.json").read_text())
    summary = {"parity_passed": report["parity"]["passed"],
               "max_abs_diff_class_logits": report["parity"]["max_abs_diff_class_logits"],
               "max_abs_diff_mask_logits": report["parity"]["max_abs_diff_mask_logits"],
               "temperature": report["temperature"], "int8_kept": report["int8"]["kept"],
               "int8_macro_f1_drop": report["int8"]["macro_f1_drop"], "model_version": run["version"]}
    _write_json(layout.metrics / "export.json", summary)
    configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_id=run["run_id"]):
        mlflow.log_artifacts(str(layout.export), artifact_path="onnx")
        mlflow.log_metrics({"onnx_max_abs_diff_class_logits": summary["max_abs_diff_class_logits"],
                            "int8_macro_f1_drop": summary["int8_macro_f1_drop"]})
    tag_version(run["model_name"], run["version"],
                {f"onnx_{key}": summary[key] for key in ("parity_passed", "int8_kept", "temperature")})
    if failure is not None:
        raise RuntimeError(str(failure))
    return summary


def gate(params: Params, layout: Layout = Layout()) -> dict:
    """Promotion gate: challenger vs champion on the frozen test split (and real data)."""
    from waferflow.evaluation.evaluate import load_real_arrays
    from waferflow.registry.gate import run_gate
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.training.data import WaferArrays

    run = layout.train_run()
    configure_mlflow(params.mlflow, layout.root)
    real, _ = load_real_arrays(layout.resolve(params.evaluate.real_data_dir), params.preprocess.image_size)
    result = run_gate(params.mlflow.registered_model, run["version"],
                      WaferArrays.from_parquet(layout.processed / "test.parquet"), params.gate, real)
    _write_json(layout.metrics / "gate.json", result)
    return result
