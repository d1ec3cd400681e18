"""The monitoring runs behind ``waferflow drift``, ``waferflow shadow`` and the monitor DAG.

* :func:`reference_window` — the reference: wafer features of the production maps the model was
  trained beside (the unlabeled maps of ``data/interim/validated.parquet``, else all of it) and the
  **champion's predictions on them**, cached per reference file and model version under
  ``data/monitoring/reference/`` (one ONNX pass per new champion, then a file read).
* :func:`current_window` — the prediction log's last ``drift.window_days`` days, without the
  challenger's shadow rows (each wafer once, as the champion answered it).
* :func:`run_drift` — evidently's check of both (:func:`waferflow.monitoring.drift.check_drift`);
  writes ``drift.json`` (the summary and the decision) and the evidently ``drift.html`` side by
  side and logs both to an MLflow run ``drift``.
* :func:`run_shadow_report` — champion vs challenger over the log window (only the rows of the
  versions the aliases name now), with accuracy on the wafers labeled through active learning;
  writes ``metrics/shadow.json`` and an MLflow run ``shadow``. The promotion gate reads it.

Paths are relative to the project ``root`` (the DAG runs anywhere); ``s3://`` logs are used as is.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from waferflow.config import Params
from waferflow.fileio import atomic_path, write_json
from waferflow.monitoring.features import feature_frame
from waferflow.monitoring.prediction_log import PredictionLog
from waferflow.stages.layout import Layout

__all__ = ["REFERENCE_CACHE", "reference_window", "current_window", "run_drift", "prediction_log",
           "registry_aliases", "run_shadow_report", "shadow_labels"]

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
    """Reference features (+ the champion's ``predicted_class`` / ``confidence`` when
    ``predictions``) and what they are: file, wafers, model version or why there are no predictions."""
    from tqdm.auto import tqdm

    from waferflow.data.records import read_records

    reference = Layout(root).resolve(reference)
    if not reference.is_file():
        raise FileNotFoundError(f"reference {reference} not found: run `dvc repro validate` or pass --reference")
    records = read_records(reference)
    unlabeled = [r for r in records if r.label is None]
    records = unlabeled or records  # the unlabeled production maps when there are any
    info = {"reference": str(reference), "reference_wafers": len(records),
            "reference_kind": "unlabeled production maps" if unlabeled else "all maps",
            "reference_model_version": None}
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
        return pd.read_parquet(cache), info
    frame = feature_frame(r.die_grid for r in records)
    results = []
    for start in tqdm(range(0, len(records), 256), desc="reference predictions", unit="batch"):
        results.extend(engine.predict(records[start:start + 256]))
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


def _log_run(name: str, metrics: dict, tags: dict, files: list[Path], p: Params, root: Path) -> str:
    import mlflow

    from waferflow.registry.tracking import configure_mlflow

    experiment = configure_mlflow(p.mlflow, root)
    with mlflow.start_run(run_name=name, experiment_id=experiment) as run:
        mlflow.log_metrics(metrics)
        mlflow.set_tags({k: str(v)[:5000] for k, v in tags.items()})
        for f in files:
            mlflow.log_artifact(str(f))
    return run.info.run_id


def run_drift(p: Params, root: Path, current: pd.DataFrame, source: str | list[str], out_dir: Path,
              reference: Path = Path("data/interim/validated.parquet"), mlflow_run: bool = True) -> dict:
    """Drift check of ``current`` against the reference; writes ``out_dir/drift.json`` and
    ``out_dir/drift.html``, logs an MLflow run ``drift``; returns the summary.

    Raises ``ValueError`` when a window is too small to judge (``drift.min_wafers``) and
    ``FileNotFoundError`` when the reference is missing."""
    from waferflow.monitoring.drift import PREDICTION_COLUMNS, check_drift

    skipped = current.attrs.get("skipped_log_parts", [])  # read first: pandas may drop attrs on the way
    has_predictions = "predicted_class" in current and current["predicted_class"].notna().any()
    ref, info = reference_window(p, root, reference, predictions=has_predictions)
    if has_predictions and "predicted_class" not in ref:
        current = current.drop(columns=list(PREDICTION_COLUMNS), errors="ignore")
    result = check_drift(ref, current, p.drift)
    versions = Counter(str(v) for v in current["model_version"].dropna()) if "model_version" in current else {}
    summary = {**result.summary, **info, "current": source, "current_model_versions": dict(versions),
               "skipped_log_parts": skipped,
               "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out_dir = Layout(root).resolve(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "drift.json", summary, sort_keys=False, default=str)
    result.save_html(out_dir / "drift.html")
    if mlflow_run:
        metrics = {"drifted_share": summary["drifted_share"], "drifted_features": len(summary["drifted_features"]),
                   "retrain_recommended": float(summary["retrain_recommended"]),
                   "current_wafers": summary["n_current"], "reference_wafers": summary["n_reference"],
                   **{f"drift_score.{c}": v["score"] for c, v in {**summary["features"],
                                                                  **summary["predictions"]}.items()}}
        summary["mlflow_run_id"] = _log_run(
            "drift", metrics, {"retrain_recommended": summary["retrain_recommended"],
                               "reasons": "; ".join(summary["reasons"]), "current": source,
                               "reference_model_version": info["reference_model_version"]},
            [out_dir / "drift.json", out_dir / "drift.html"], p, root)
        write_json(out_dir / "drift.json", summary, sort_keys=False, default=str)
    return summary


def registry_aliases(p: Params, root: Path) -> dict[str, str]:
    """The registered model's aliases now (empty when it is not registered yet)."""
    from mlflow import MlflowClient

    from waferflow.registry.tracking import configure_mlflow

    configure_mlflow(p.mlflow, root)
    try:
        return {k: str(v) for k, v in MlflowClient().get_registered_model(p.mlflow.registered_model).aliases.items()}
    except Exception:  # noqa: BLE001 - MLflow raises its own type for an unknown model
        return {}


def shadow_labels(p: Params, root: Path) -> dict[tuple[str, str], str]:
    """(lot, wafer) -> class for every production wafer labeled through ``waferflow label import``."""
    from waferflow.active.labels import read_store

    store = read_store(Layout(root).resolve(p.al.labels_dir))
    return {(str(r.lot_id), str(r.wafer_id)): str(r.label) for r in store.itertuples()}


def run_shadow_report(p: Params, root: Path, out: Path = Path("metrics/shadow.json"),
                      labels: dict[tuple[str, str], str] | None = None, extra: dict | None = None,
                      mlflow_run: bool = True) -> dict:
    """Champion vs challenger over the log window; writes ``out`` and an MLflow run ``shadow``.

    Only rows of the versions the ``champion`` / ``challenger`` aliases name now are paired (older
    versions in the window are left out). Raises ``ValueError`` when there is no challenger or no
    wafer both models predicted."""
    from waferflow.monitoring.shadow import shadow_report

    aliases = registry_aliases(p, root)
    if "challenger" not in aliases or "champion" not in aliases:
        raise ValueError(f"{p.mlflow.registered_model} has no champion and challenger to compare "
                         f"(aliases: {aliases or 'none'})")
    plog = prediction_log(p, root)
    rows = plog.read(days=p.drift.window_days)
    wanted = ((rows["alias"] == "champion") & (rows["model_version"].astype(str) == aliases["champion"])) | \
             ((rows["alias"] == "challenger") & (rows["model_version"].astype(str) == aliases["challenger"]))
    merged = {**shadow_labels(p, root), **(labels or {})}
    report = {**shadow_report(rows[wanted], merged), "window_days": p.drift.window_days,
              "skipped_log_parts": plog.skipped_parts,
              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(extra or {})}
    out = Layout(root).resolve(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report, sort_keys=False)
    if mlflow_run:
        lab = report["labeled"] or {}
        metrics = {"agreement": report["agreement"], "wafers": report["wafers"],
                   **{f"{side}_{k}": report[side][k] for side in ("champion", "challenger")
                      for k in ("mean_confidence", "latency_ms_p95") if report[side][k] is not None},
                   **{f"labeled_{k}": v for k, v in lab.items()}}
        report["mlflow_run_id"] = _log_run("shadow", metrics,
                                           {"champion_version": report["champion"]["model_version"],
                                            "challenger_version": report["challenger"]["model_version"]},
                                           [out], p, root)
        write_json(out, report, sort_keys=False)
    return report
