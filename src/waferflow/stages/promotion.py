"""Stage gate: challenger vs champion in the MLflow registry."""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.stages.layout import Layout, write_json

__all__ = ["gate", "judge"]


def judge(params: Params, layout: Layout, version: str) -> dict:
    """Run the promotion gate on ``version``: the frozen test split, real data when present, and the
    latest shadow report (``gate.shadow_report``; its rules apply when it is about this pair)."""
    from waferflow.evaluation.evaluate import load_real_arrays
    from waferflow.registry.gate import run_gate
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.data.arrays import WaferArrays

    configure_mlflow(params.mlflow, layout.root)
    shadow_path = layout.resolve(params.gate.shadow_report)
    shadow = json.loads(shadow_path.read_text()) if shadow_path.is_file() else None
    # The gate chooses between versions, so it looks at the real dev lots only: the test lots stay for reporting.
    real, _ = load_real_arrays(layout.resolve(params.evaluate.real_data_dir), params.preprocess.image_size, part="dev")
    return run_gate(params.mlflow.registered_model, str(version),
                    WaferArrays.from_parquet(layout.processed / "test.parquet"), params.gate, real, shadow)


def gate(params: Params, layout: Layout = Layout()) -> dict:
    """Promotion gate on the version the train stage registered."""
    result = judge(params, layout, layout.train_run()["version"])
    write_json(layout.metrics / "gate.json", result)
    return result
