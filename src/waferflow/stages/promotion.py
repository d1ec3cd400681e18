"""Stage gate: challenger vs champion in the MLflow registry."""

from __future__ import annotations


from waferflow.config import Params
from waferflow.stages.layout import Layout, write_json

__all__ = ["gate"]


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
    write_json(layout.metrics / "gate.json", result)
    return result
