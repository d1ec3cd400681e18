"""Stage index_log: the production wafers of the prediction log as past wafers of the
similar-wafer index (``waferflow.explain.similar.past_index`` answers from both).

Not a DVC stage — its input is live traffic — but run daily by the ``waferflow_monitor`` DAG (and
``waferflow index_log``): the log's last ``index.log_days`` days, the champion's rows (the
challenger's shadow rows answer the same wafers), the latest row per (lot, wafer), wafers of the
labeled index and rows without a lot or a die grid (parts from before the log kept grids) left
out. A wafer labeled since through ``waferflow label import`` carries that label; the others
carry ``label`` None and the class the model gave. Embedded by the model of ``models/`` (the one
the labeled index must have been built by) into ``data/index_log/`` with the grids (galleries),
summary in ``metrics/index_log.json``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Embed the logged production wafers into ``data/index_log``."""
    from waferflow.data.resize import resize_grid
    from waferflow.explain.similar import LABELED_INDEX, LOG_INDEX, LOG_SPLIT, WaferIndex, embed
    from waferflow.inference.prediction_log import logged_grids
    from waferflow.monitoring.windows import prediction_log, shadow_labels
    from waferflow.registry.pyfunc import load_weights

    started = time.perf_counter()
    trained = layout.train_run()
    labeled = WaferIndex.load(layout.root / LABELED_INDEX)
    if str(labeled.info.get("model_version")) != str(trained["version"]):
        raise RuntimeError(
            f"{LABELED_INDEX} was built by model version {labeled.info.get('model_version')}, models/ holds "
            f"version {trained['version']}: run `dvc repro index` first (both indexes must share one embedding)"
        )
    plog = prediction_log(params, layout.root)
    rows = plog.read(days=params.index.log_days)
    read = len(rows)
    rows = rows[rows["alias"].fillna("") != "challenger"]
    rows = rows[rows["lot_id"].notna() & rows["wafer_id"].notna()]
    rows = rows.assign(lot_id=rows["lot_id"].astype(str), wafer_id=rows["wafer_id"].astype(str))
    rows = rows.drop_duplicates(["lot_id", "wafer_id"], keep="last")  # read() sorts oldest first
    known = set(zip(labeled.wafers["lot_id"].astype(str), labeled.wafers["wafer_id"].astype(str)))
    rows = rows[[key not in known for key in zip(rows["lot_id"], rows["wafer_id"])]].reset_index(drop=True)
    grids = logged_grids(rows)
    keep = [g is not None for g in grids]
    rows, grids = rows[keep].reset_index(drop=True), [g for g in grids if g is not None]

    size = tuple(params.preprocess.image_size)
    inputs = np.stack([resize_grid(g, size) for g in grids]) if grids else np.zeros((0, *size), np.uint8)
    predictor = load_weights(layout.root / trained["weights"])
    embeddings = (
        embed(predictor, inputs, progress=progress) if len(inputs) else np.zeros((0, labeled.embeddings.shape[1]))
    )
    reviewed = shadow_labels(params, layout.root)
    wafers = pd.DataFrame(
        {
            "lot_id": rows["lot_id"].to_numpy(),
            "wafer_id": rows["wafer_id"].to_numpy(),
            "label": [reviewed.get(key) for key in zip(rows["lot_id"], rows["wafer_id"])],
            "predicted_class": rows["predicted_class"].to_numpy(),
            "logged_at": rows["logged_at"].astype(str).to_numpy(),
            "source": "prediction_log",
            "split": LOG_SPLIT,
            "row": np.arange(len(rows)),
        }
    )
    info = {
        "model_version": trained["version"],
        "weights": trained["weights"],
        "splits": [LOG_SPLIT],
        "log": plog.root,
        "log_days": params.index.log_days,
    }
    WaferIndex(embeddings, wafers, info).save(layout.root / LOG_INDEX, grids=inputs)
    summary = {
        **info,
        "log_rows_read": read,
        "skipped_log_parts": len(plog.skipped_parts),
        "wafers": len(wafers),
        "reviewed": int(wafers["label"].notna().sum()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(layout.metrics / "index_log.json", summary)
    return summary


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "index_log.json").read_text())


def summarise(s: dict) -> list[str]:
    return [
        f"similar-wafer index: {s['wafers']} production wafers of the prediction log's last {s['log_days']} days "
        f"({s['reviewed']} labeled since) embedded by model version {s['model_version']} in {s['seconds']} s "
        "-> data/index_log",
        f"read {s['log_rows_read']} log rows from {s['log']}"
        + (f"; {s['skipped_log_parts']} unreadable parts left out" if s["skipped_log_parts"] else "")
        + " (challenger rows, repeats, wafers already labeled and rows without a die grid are left out)",
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("index_log")
