"""Stage al_query: the annotation queue for the next labeling round — the unlabeled wafers the
trained model is least sure about (``al.strategy``, ``al.budget``), without those already labeled.

DVC runs ``python pipelines/al_query.py``. Outputs: ``data/al/queue`` (``queue.csv`` to fill in,
``queue.parquet``, images), ``metrics/al_query.json``. Annotators' answers come back through
``waferflow label import``.
"""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Score the unlabeled pool with the trained model and write the queue."""
    from waferflow.active.query import build_queue
    from waferflow.registry.pyfunc import load_weights

    trained = layout.train_run()
    summary = build_queue(
        load_weights(layout.root / trained["weights"]),
        layout.processed / "unlabeled.parquet",
        [layout.processed / "train.parquet", layout.processed / "val.parquet"],
        params.al,
        layout.al_queue,
        layout.resolve(params.al.labels_dir),
        progress=progress,
        novelty=_novelty(layout) if params.al.novel_first else None,
    )
    summary["model_version"] = trained["version"]
    write_json(layout.metrics / "al_query.json", summary)
    return summary


def _novelty(layout: Layout):
    """The novelty stage's head and calibration (``al.novel_first``)."""
    import torch

    from waferflow.triage.novelty import NoveltyHead

    folder = layout.root / "data/novelty"
    if not (folder / "head.pt").is_file():
        raise FileNotFoundError(f"al.novel_first needs {folder}/head.pt: run `dvc repro novelty`")
    head = NoveltyHead.from_state(torch.load(folder / "head.pt", weights_only=True))
    return head, json.loads((folder / "triage.json").read_text())


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "al_query.json").read_text())


def summarise(q: dict) -> list[str]:
    return [
        f"annotation queue, round {q['round']}: {q['selected']} of {q['pool_size']} unlabeled wafers by "
        f"{q['strategy']} in {q['total_seconds']} s -> {q['queue']}",
        f"predicted classes of the selection: {q['selected_predicted_classes']}",
        "label them (fill `label` in a copy of queue.csv), then: waferflow label import FILE.csv",
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("al_query")
