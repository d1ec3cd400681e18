"""Stage generate: the embedded default data set (labeled pool, unlabeled pool, fixed test set).

DVC runs ``python pipelines/generate.py``; ``waferflow generate`` runs the same ``run``.
Outputs: ``data/generated/{labeled,unlabeled,test}.parquet``, a gallery PNG, ``metrics/generate.json``.
"""

from __future__ import annotations

import json
from collections import Counter

from waferflow.config import Params
from waferflow.data.records import write_records
from waferflow.fileio import write_json
from waferflow.layout import Layout
from waferflow.synth.dataset import generate_dataset
from waferflow.viz import save_gallery


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Generate every set, draw the gallery; wafers per set and class."""
    sets = generate_dataset(params.synth, progress=progress)
    counts = {}
    for name, records in sets.items():
        write_records(records, layout.generated / f"{name}.parquet")
        counts[name] = {
            "total": len(records),
            **dict(sorted(Counter(r.label or r.attrs.get("true_label", "unlabeled") for r in records).items())),
        }
    save_gallery(
        sets["labeled"],
        layout.figures / "generated_gallery.png",
        per_class=params.synth.gallery_per_class,
        title="generated wafer maps (labeled pool) with defect masks",
    )
    write_json(layout.metrics / "generate.json", counts)
    return counts


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "generate.json").read_text())


def summarise(counts: dict) -> list[str]:
    return [
        f"generated {sum(c['total'] for c in counts.values())} wafers: "
        + ", ".join(f"{subset} {c['total']}" for subset, c in counts.items())
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("generate")
