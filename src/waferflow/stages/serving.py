"""Stage export: ONNX for serving."""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.stages.layout import Layout, write_json

__all__ = ["export"]


def export(params: Params, layout: Layout = Layout()) -> dict:
    """ONNX export of the trained predictor: checker, parity on the test split, INT8."""
    import mlflow

    from waferflow.inference.export import ParityError, export_onnx
    from waferflow.registry.pyfunc import load_weights
    from waferflow.registry.register import tag_version
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.data.arrays import WaferArrays

    run = layout.train_run()
    val = WaferArrays.from_parquet(layout.processed / "val.parquet")
    test = WaferArrays.from_parquet(layout.processed / "test.parquet")
    cfg = params.export
    failure = None
    try:
        report = export_onnx(load_weights(layout.root / run["weights"]), layout.export, val.grids, test.grids,
                             test.labels, cfg.tolerance, cfg.max_int8_f1_drop, cfg.calibration_size)
    except ParityError as exc:
        failure = exc
        report = json.loads((layout.export / "export.json").read_text())
    summary = {"parity_passed": report["parity"]["passed"],
               "max_abs_diff_class_logits": report["parity"]["max_abs_diff_class_logits"],
               "max_abs_diff_class_probs": report["parity"]["max_abs_diff_class_probs"],
               "mask_die_mismatches": report["parity"]["mask_die_mismatches"],
               "temperature": report["temperature"], "int8_kept": report["int8"]["kept"],
               "int8_macro_f1_drop": report["int8"]["macro_f1_drop"], "model_version": run["version"]}
    write_json(layout.metrics / "export.json", summary)
    configure_mlflow(params.mlflow, layout.root)
    with mlflow.start_run(run_id=run["run_id"]):
        if failure is None:
            mlflow.log_artifacts(str(layout.export), artifact_path="onnx")
        else:  # a model that disagrees with its weights is not served: keep only the report
            mlflow.log_artifact(str(layout.export / "export.json"), artifact_path="onnx")
        mlflow.log_metrics({"onnx_max_abs_diff_class_logits": summary["max_abs_diff_class_logits"],
                            "int8_macro_f1_drop": summary["int8_macro_f1_drop"]})
    tag_version(run["model_name"], run["version"],
                {f"onnx_{key}": summary[key] for key in ("parity_passed", "int8_kept", "temperature")})
    if failure is not None:
        raise RuntimeError(str(failure))
    return summary
