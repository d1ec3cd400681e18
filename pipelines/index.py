"""Stage index: the similar-wafer index — every labeled wafer of the train, val and test splits
embedded by the trained model (``waferflow.explain.similar``), for ``waferflow similar``.

DVC runs ``python pipelines/index.py``. Outputs: ``data/index/`` (``embeddings.npy``,
``wafers.parquet`` with lot, wafer, label, split and row, ``index.json``), ``metrics/index.json``
with precision@10 of the test split against the train and val wafers (lots never shared).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout

SPLITS = ("train", "val", "test")


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Embed the labeled wafers, write the index, measure it on the test split."""
    from waferflow.classes import CLASSES
    from waferflow.data.arrays import WaferArrays
    from waferflow.explain.similar import WaferIndex, embed, precision_at_k
    from waferflow.registry.pyfunc import load_weights

    started = time.perf_counter()
    trained = layout.train_run()
    predictor = load_weights(layout.root / trained["weights"])
    embeddings, wafers = [], []
    for split in SPLITS:
        arrays = WaferArrays.from_parquet(layout.processed / f"{split}.parquet")
        labeled = np.flatnonzero(arrays.labels >= 0)
        arrays = arrays.take(labeled)
        embeddings.append(embed(predictor, arrays.grids, progress=progress))
        wafers.append(
            pd.DataFrame(
                {
                    "lot_id": arrays.frame["lot_id"].to_numpy(),
                    "wafer_id": arrays.frame["wafer_id"].to_numpy(),
                    "label": [CLASSES[k] for k in arrays.labels],
                    "source": arrays.frame["source"].to_numpy(),
                    "split": split,
                    "row": labeled,
                }
            )
        )
    info = {"model_version": trained["version"], "weights": trained["weights"], "splits": list(SPLITS)}
    index = WaferIndex(np.concatenate(embeddings), pd.concat(wafers, ignore_index=True), info)
    index.save(layout.root / "data/index")
    past = index.wafers["split"] != "test"
    reference = WaferIndex(index.embeddings[past.to_numpy()], index.wafers[past])
    test = index.wafers[~past]
    summary = {
        **info,
        "wafers": len(index),
        "by_split": {s: int((index.wafers["split"] == s).sum()) for s in SPLITS},
        "dim": int(index.embeddings.shape[1]),
        "test_precision_at_10": round(
            precision_at_k(reference, index.embeddings[~past.to_numpy()], test["label"].tolist(), k=10), 4
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(layout.metrics / "index.json", summary)
    return summary


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "index.json").read_text())


def summarise(s: dict) -> list[str]:
    return [
        f"similar-wafer index: {s['wafers']} labeled wafers embedded by model version {s['model_version']} "
        f"in {s['seconds']} s -> data/index",
        f"precision@10 of the test split against train + val: {s['test_precision_at_10']}",
        "query it: waferflow similar FILE -k 10",
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("index")
