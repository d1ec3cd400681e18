"""Stage export: the trained predictor (calibration and fail-die masking inside the graph) to
ONNX for serving: checker, parity with PyTorch on the test split, INT8 only when it keeps accuracy.

DVC runs ``python pipelines/export.py``. Outputs: ``export/`` (``model.onnx``, ``export.json``),
``metrics/export.json``; the ONNX files are logged beside the model version in MLflow. A parity
failure logs only the report and fails the stage (a model that disagrees with its weights is
never served).
"""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout


def run(params: Params, layout: Layout) -> dict:
    """ONNX export of the trained predictor; the parity and INT8 figures."""
    import mlflow

    from waferflow.data.arrays import WaferArrays
    from waferflow.inference.export import ParityError, export_onnx
    from waferflow.patterns.trees import PatternClassifier
    from waferflow.registry.pyfunc import load_weights
    from waferflow.registry.register import tag_version
    from waferflow.registry.tracking import configure_mlflow

    trained = layout.train_run()
    head, triage = _triage(layout, trained["version"])
    patterns = PatternClassifier.from_dir(layout.root / "data/patterns")  # None: the U-Net alone serves
    val = WaferArrays.from_parquet(layout.processed / "val.parquet")
    test = WaferArrays.from_parquet(layout.processed / "test.parquet")
    cfg = params.export
    failure = None
    try:
        report = export_onnx(
            load_weights(layout.root / trained["weights"]),
            layout.export,
            val.grids,
            test.grids,
            test.labels,
            cfg.tolerance,
            cfg.max_int8_f1_drop,
            cfg.calibration_size,
            novelty_head=head,
            triage=triage,
            patterns=patterns,
        )
    except ParityError as exc:
        failure = exc
        report = json.loads((layout.export / "export.json").read_text())
    summary = {
        "parity_passed": report["parity"]["passed"],
        "max_abs_diff_class_logits": report["parity"]["max_abs_diff_class_logits"],
        "max_abs_diff_class_probs": report["parity"]["max_abs_diff_class_probs"],
        "mask_die_mismatches": report["parity"]["mask_die_mismatches"],
        "temperature": report["temperature"],
        "int8_kept": report["int8"]["kept"],
        "int8_macro_f1_drop": report["int8"]["macro_f1_drop"],
        "max_abs_diff_novelty": report["parity"].get("max_abs_diff_novelty"),
        "pattern_trees": patterns is not None,
        "model_version": trained["version"],
    }
    write_json(layout.metrics / "export.json", summary)
    configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_id=trained["run_id"]):
        if failure is None:
            mlflow.log_artifacts(str(layout.export), artifact_path="onnx")
        else:  # a model that disagrees with its weights is not served: keep only the report
            mlflow.log_artifact(str(layout.export / "export.json"), artifact_path="onnx")
        mlflow.log_metrics(
            {
                "onnx_max_abs_diff_class_logits": summary["max_abs_diff_class_logits"],
                "int8_macro_f1_drop": summary["int8_macro_f1_drop"],
            }
        )
    tag_version(
        trained["model_name"],
        trained["version"],
        {f"onnx_{key}": summary[key] for key in ("parity_passed", "int8_kept", "temperature")},
    )
    if failure is not None:
        raise RuntimeError(str(failure))
    return summary


def _triage(layout: Layout, version: str):
    """The novelty head and triage calibration of the novelty stage, for model ``version``."""
    import torch

    from waferflow.triage.novelty import NoveltyHead

    folder = layout.root / "data/novelty"
    if not (folder / "head.pt").is_file() or not (folder / "triage.json").is_file():
        raise FileNotFoundError(f"{folder} has no novelty head: run `dvc repro novelty` first")
    triage = json.loads((folder / "triage.json").read_text())
    if str(triage.get("model_version")) != str(version):
        raise RuntimeError(
            f"{folder} was fitted for model version {triage.get('model_version')}, models/ holds version "
            f"{version}: run `dvc repro novelty`"
        )
    return NoveltyHead.from_state(torch.load(folder / "head.pt", weights_only=True)), triage


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "export.json").read_text())


def summarise(s: dict) -> list[str]:
    return [
        f"exported v{s['model_version']} to ONNX: parity {'passed' if s['parity_passed'] else 'FAILED'} "
        f"(max |diff| of class probabilities {s['max_abs_diff_class_probs']:.2e}), INT8 "
        + ("kept" if s["int8_kept"] else f"dropped (costs {s['int8_macro_f1_drop']:+.4f} macro-F1)"),
        *(f"{key}: {value}" for key, value in s.items()),
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("export")
