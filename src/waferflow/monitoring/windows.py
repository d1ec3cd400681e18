"""The two windows the monitor compares, and where production predictions are logged.

* :func:`prediction_log` — the project's prediction log (``drift.prediction_log``).
* :func:`reference_window` — the reference: wafer features of the production maps the model was
  trained beside (the unlabeled maps of ``data/interim/validated.parquet``, else all of it) and the
  **champion's predictions on them**, cached per reference file and model version under
  ``data/monitoring/reference/`` (one ONNX pass per new champion, then a file read).
* :func:`current_window` — the prediction log's last ``drift.window_days`` days, without the
  challenger's shadow rows (each wafer once, as the champion answered it).
* :func:`shadow_labels` — the production wafers labeled through active learning.

The drift and shadow stages (``pipelines/drift.py``, ``pipelines/shadow.py``) judge them.
Paths are relative to the project ``root`` (the DAG runs anywhere); ``s3://`` logs are used as is.

Example:
    >>> frame, source = current_window(load_params("params.yaml"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from waferflow.config import Params
from waferflow.fileio import atomic_path
from waferflow.data.features import feature_frame
from waferflow.inference.prediction_log import PredictionLog
from waferflow.layout import Layout

__all__ = ["REFERENCE_CACHE", "reference_window", "current_window", "prediction_log", "shadow_labels"]

log = logging.getLogger(__name__)
REFERENCE_CACHE = "data/monitoring/reference"


def prediction_log(p: Params, root: Path = Path(".")) -> PredictionLog:
    """The project's prediction log (``drift.prediction_log``; a relative folder is under ``root``)."""
    where = p.drift.prediction_log
    return PredictionLog(where if where.startswith("s3://") else Layout(root).resolve(where))


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _champion_engine(p: Params, root: Path):
    from waferflow.inference.engine import InferenceEngine
    from waferflow.registry.tracking import configure_mlflow

    configure_mlflow(p.mlflow, root)
    return InferenceEngine.from_registry(p.mlflow.registered_model, "champion")


def reference_window(p: Params, root: Path, reference: Path, predictions: bool = True) -> tuple[pd.DataFrame, dict]:
    """Reference features (+ the champion's ``predicted_class`` / ``confidence`` and each wafer's
    ``lot_id`` — the class mix's sampling noise is drawn lot by lot — when ``predictions``) and
    what they are: file, wafers, model version or why there are no predictions."""
    from tqdm.auto import tqdm

    from waferflow.data.records import read_records

    reference = Layout(root).resolve(reference)
    if not reference.is_file():
        raise FileNotFoundError(f"reference {reference} not found: run `dvc repro validate` or pass --reference")
    records = read_records(reference)
    unlabeled = [r for r in records if r.label is None]
    records = unlabeled or records  # the unlabeled production maps when there are any
    info = {
        "reference": str(reference),
        "reference_wafers": len(records),
        "reference_kind": "unlabeled production maps" if unlabeled else "all maps",
        "reference_model_version": None,
    }
    if not predictions:
        info["prediction_drift"] = "not checked: the current window has no predictions"
        return feature_frame(r.die_grid for r in records), info
    try:
        engine = _champion_engine(p, root)
    except Exception as exc:  # no registry, no champion, no ONNX export: features only, said so
        info["prediction_drift"] = f"not checked: cannot load the champion ({type(exc).__name__}: {exc})"
        return feature_frame(r.die_grid for r in records), info
    info["reference_model_version"] = engine.model_version
    cache = Layout(root).resolve(REFERENCE_CACHE) / f"{_digest(reference)}-v{engine.model_version}.parquet"
    info["reference_cache"] = str(cache)
    if cache.is_file():
        cached = pd.read_parquet(cache)
        if "lot_id" in cached:  # caches from before the frame kept lots are made again
            return cached, info
    frame = feature_frame(r.die_grid for r in records).assign(lot_id=[r.lot_id for r in records])
    results = []
    for start in tqdm(range(0, len(records), 256), desc="reference predictions", unit="batch"):
        results.extend(engine.predict(records[start : start + 256]))
    frame["predicted_class"] = [r["class"] for r in results]
    frame["confidence"] = [r["confidence"] for r in results]
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache, fsync=False) as tmp:  # a derived cache: concurrent writers write the same thing
        frame.to_parquet(tmp, index=False)
    return frame, info


def current_window(p: Params, root: Path = Path(".")) -> tuple[pd.DataFrame, str]:
    """The log's last ``drift.window_days`` days, the challenger's shadow rows left out; the log
    parts that could not be read are listed in ``rows.attrs["skipped_log_parts"]``."""
    plog = prediction_log(p, root)
    rows = plog.read(days=p.drift.window_days)
    rows = rows[rows["alias"].fillna("") != "challenger"].reset_index(drop=True)
    rows.attrs["skipped_log_parts"] = plog.skipped_parts
    return rows, f"{plog.root} (last {p.drift.window_days} days, challenger rows left out)"


def shadow_labels(p: Params, root: Path) -> dict[tuple[str, str], str]:
    """(lot, wafer) -> class for every production wafer labeled through ``waferflow label import``."""
    from waferflow.active.labels import read_store

    store = read_store(Layout(root).resolve(p.al.labels_dir))
    return {(str(r.lot_id), str(r.wafer_id)): str(r.label) for r in store.itertuples()}
