"""Stage split: annotator labels applied, maps resized to the model size, split
train / val / test / unlabeled (whole lots: no lot in two splits; stratified, seeded).

DVC runs ``python pipelines/split.py``. Outputs: ``data/processed/*.parquet``, a gallery of the
training split as the model sees it, ``metrics/split.json``.
"""

from __future__ import annotations

import json

import pyarrow as pa

from waferflow.config import Params
from waferflow.data.records import SCHEMA, read_frame, table_to_records, write_records
from waferflow.data.split import resize_frame, split_counts, split_frame
from waferflow.fileio import write_json
from waferflow.layout import Layout
from waferflow.viz import save_gallery


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Give annotator labels (``waferflow label import``) to their wafers, resize and split."""
    from waferflow.active.labels import apply_labels

    cfg = params.split_config()
    frame, al_counts = apply_labels(read_frame(layout.validated), layout.resolve(params.al.labels_dir))
    frame = resize_frame(frame, cfg.image_size, progress=progress)
    parts = split_frame(frame, cfg)
    for name, part in parts.items():
        write_records(
            pa.Table.from_pandas(part[SCHEMA.names], schema=SCHEMA, preserve_index=False),
            layout.processed / f"{name}.parquet",
        )
    counts = {**split_counts(parts), "annotator_labels": al_counts}
    write_json(layout.metrics / "split.json", counts)
    train_sample = table_to_records(parts["train"].groupby("label", group_keys=False).head(6))
    save_gallery(
        train_sample,
        layout.figures / "split_gallery.png",
        per_class=6,
        title=f"training split as the model sees it ({cfg.image_size[0]}x{cfg.image_size[1]})",
    )
    return counts


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "split.json").read_text())


def summarise(counts: dict) -> list[str]:
    parts = {k: c for k, c in counts.items() if isinstance(c, dict) and "total" in c}
    return [
        "split: "
        + ", ".join(f"{subset} {c['total']} ({c.get('lots', '?')} lots)" for subset, c in parts.items())
        + f"; no lot in two splits ({counts.get('lots_in_two_splits', 0)} shared)"
        + f"; annotator labels applied: {counts.get('annotator_labels', {}).get('applied', 0)}",
        *(f"{subset}: {c}" for subset, c in counts.items()),
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("split")
