"""Stage al_query: the annotation queue for the next labeling round."""

from __future__ import annotations

from waferflow.config import Params
from waferflow.stages.layout import Layout, write_json

__all__ = ["al_query", "QUEUE_DIR"]

QUEUE_DIR = "data/al/queue"  # as in dvc.yaml


def al_query(params: Params, layout: Layout = Layout(), progress: bool = True) -> dict:
    """Score the unlabeled pool with the trained model and write ``data/al/queue``."""
    from waferflow.active.query import build_queue
    from waferflow.registry.pyfunc import load_weights

    run = layout.train_run()
    summary = build_queue(load_weights(layout.root / run["weights"]), layout.processed / "unlabeled.parquet",
                          [layout.processed / "train.parquet", layout.processed / "val.parquet"], params.al,
                          layout / QUEUE_DIR, layout.resolve(params.al.labels_dir), progress=progress)
    summary["model_version"] = run["version"]
    write_json(layout.metrics / "al_query.json", summary)
    return summary
