"""Drift check: evidently's data-drift preset on wafer features and model outputs.

A reference window (normal production: the features of the unlabeled production maps the model
was trained beside, and the champion's predictions on them) is compared with a current window
(the prediction log). evidently picks and runs the per-column tests; this module only reads its
results back: which wafer features drifted, whether the predicted class mix or the confidence
drifted, the drifted share — and turns them into ``retrain_recommended`` with its reasons.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"fail_ratio": rng.beta(1, 30, 400), "n_dies": rng.integers(300, 900, 400)})
    >>> cur = ref.assign(fail_ratio=ref["fail_ratio"] * 3)
    >>> result = check_drift(ref, cur, DriftConfig(drift_share=0.5))
    >>> result.summary["drifted_features"], result.summary["retrain_recommended"]
    (['fail_ratio'], True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import distance

from waferflow.fileio import atomic_path
from waferflow.monitoring.config import DriftConfig
from waferflow.data.features import FEATURES

__all__ = ["DriftConfig", "DriftResult", "check_drift", "class_mix_noise", "LOG_SCALE", "PREDICTION_COLUMNS"]

PREDICTION_COLUMNS = ("predicted_class", "confidence")
# Sizes and counts are compared on a log scale (log1p): they change by factors, and their tails
# are long — a few Near-full wafers' 1 000-die clusters moved an unshifted 500-wafer window's
# mean_cluster_size by 1.09 reference std on the linear scale (a false strong drift).
LOG_SCALE = ("n_dies", "n_clusters", "mean_cluster_size")


@dataclass
class DriftResult:
    summary: dict[str, Any]
    snapshot: Any  # evidently Snapshot: save_html / json

    def save_html(self, path: Path) -> Path:
        with atomic_path(path) as tmp:
            self.snapshot.save_html(str(tmp))
        return path


def check_drift(reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig = DriftConfig()) -> DriftResult:
    """Compare two windows of wafer features (and, when both have them, ``predicted_class`` /
    ``confidence``) with evidently; the summary says what drifted and whether to retrain.
    Sizes and counts (:data:`LOG_SCALE`) are compared as ``log1p``: their scores are in
    reference standard deviations of that."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if len(current) < cfg.min_wafers:
        raise ValueError(
            f"the current window has {len(current)} wafers, fewer than drift.min_wafers = "
            f"{cfg.min_wafers}: not enough to judge drift"
        )
    if len(reference) < cfg.min_wafers:
        raise ValueError(f"the reference window has {len(reference)} wafers, fewer than {cfg.min_wafers}")
    features = [c for c in FEATURES if c in reference.columns and c in current.columns]
    if not features:
        raise ValueError(f"no wafer feature ({', '.join(FEATURES)}) is in both windows")
    numeric = features + (["confidence"] if "confidence" in reference and "confidence" in current else [])
    categorical = ["predicted_class"] if "predicted_class" in reference and "predicted_class" in current else []
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    ref = _scaled(reference[columns].astype({c: float for c in numeric}))
    cur = _scaled(current[columns].astype({c: float for c in numeric}))
    preset = DataDriftPreset(
        drift_share=cfg.drift_share,
        num_method=cfg.num_method,
        cat_method=cfg.cat_method,
        num_threshold=cfg.num_threshold,
        cat_threshold=cfg.cat_threshold,
    )
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition)
    )
    per_column = _per_column(snapshot.dict())
    drifted = [c for c in features if per_column[c]["drifted"]]
    share = len(drifted) / len(features)
    predictions = {c: per_column[c] for c in PREDICTION_COLUMNS if c in per_column}
    if "predicted_class" in predictions:
        mix = predictions["predicted_class"]
        lots = reference["lot_id"] if "lot_id" in reference else None
        mix["sampling_noise"] = round(
            class_mix_noise(ref["predicted_class"], len(cur), cfg.class_mix_noise_quantile, lots=lots), 6
        )
        mix["drifted"] = bool(mix["drifted"] and mix["score"] > mix["sampling_noise"])
    reasons = []
    if share >= cfg.drift_share:
        reasons.append(
            f"{len(drifted)} of {len(features)} wafer features drifted ({share:.0%} >= "
            f"drift.drift_share {cfg.drift_share:.0%}): {', '.join(drifted)}"
        )
    strong = [c for c in features if cfg.strong_drift is not None and per_column[c]["score"] >= cfg.strong_drift]
    if strong and share < cfg.drift_share:
        reasons.append(
            f"strong drift (score >= drift.strong_drift {cfg.strong_drift}) in "
            + ", ".join(f"{c} ({per_column[c]['score']:.2f})" for c in strong)
        )
    novel = novel_share(current, cfg.novel_share)
    if novel is not None and novel["alert"]:
        reasons.append(
            f"{novel['share']:.1%} of the window's wafers are unlike any known class (triage REJECT; "
            f"drift.novel_share {cfg.novel_share:.0%}): a new defect mechanism or a new product"
        )
    if cfg.retrain_on_prediction_drift and predictions.get("predicted_class", {}).get("drifted"):
        p = predictions["predicted_class"]
        reasons.append(
            f"the predicted class mix drifted ({p['method']} {p['score']:.3f}, threshold {p['threshold']}, "
            f"sampling noise at {len(current)} wafers {p['sampling_noise']:.3f})"
        )
    summary = {
        "n_reference": int(len(reference)),
        "n_current": int(len(current)),
        "features": {c: per_column[c] for c in features},
        "drifted_features": drifted,
        "drifted_share": round(share, 4),
        "drift_share_threshold": cfg.drift_share,
        "dataset_drift": share >= cfg.drift_share,
        "strong_drift": strong,
        "predictions": predictions,
        "novel": novel,
        "retrain_recommended": bool(reasons),
        "reasons": reasons or ["no drift above the thresholds"],
    }
    return DriftResult(summary, snapshot)


def novel_share(window: pd.DataFrame, threshold: float) -> dict | None:
    """Share of a window's triaged wafers judged REJECT (novel), and whether it exceeds
    ``threshold``; None when no wafer in it was triaged (an export without a novelty head)."""
    if "triage" not in window:
        return None
    triaged = window["triage"].dropna()
    if triaged.empty:
        return None
    share = float((triaged == "REJECT").mean())
    return {"share": round(share, 4), "wafers": int(len(triaged)), "threshold": threshold, "alert": share > threshold}


def _scaled(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the :data:`LOG_SCALE` columns it has as ``log1p``."""
    return frame.assign(**{c: np.log1p(frame[c].clip(lower=0)) for c in LOG_SCALE if c in frame})


def class_mix_noise(
    reference: pd.Series,
    n: int,
    quantile: float = 0.99,
    draws: int = 500,
    seed: int = 0,
    lots: pd.Series | None = None,
) -> float:
    """What sampling alone gives, with no drift at all: the ``quantile`` of the Jensen-Shannon
    distances (as evidently computes them) between two windows drawn from the reference — one of
    the reference's size, one of ``n`` wafers, as the check compares them. Both are drawn lot by
    lot (whole lots with replacement) when ``lots`` names each reference wafer's lot: wafers of one
    lot share a product and a process history, so their answers move together, and a window of
    300 wafers is some 30 lots, not 300 independent draws. Without ``lots`` each wafer is its own."""
    classes, codes = np.unique(np.asarray(reference, dtype=str), return_inverse=True)
    units = np.arange(len(codes)) if lots is None else pd.factorize(np.asarray(lots, dtype=str))[0]
    counts = np.zeros((units.max() + 1, len(classes)))
    np.add.at(counts, (units, codes), 1)  # class counts per lot
    size = counts.sum(axis=1).mean()
    rng = np.random.default_rng(seed)

    def windows(wafers: int) -> np.ndarray:
        picked = rng.integers(len(counts), size=(draws, max(1, round(wafers / size))))
        mixed = counts[picked].sum(axis=1)
        return mixed / mixed.sum(axis=1, keepdims=True)

    return float(np.quantile(distance.jensenshannon(windows(len(codes)), windows(n), axis=1), quantile))


def _per_column(report: dict) -> dict[str, dict]:
    """Each column's drift score, method, threshold and evidently's verdict, from a snapshot dict."""
    by_id = {m["id"]: m for m in report["metrics"]}
    out = {}
    for test in report["tests"]:
        metric = by_id.get(test.get("bound_test", {}).get("metric_fingerprint"))
        if metric is None or "column" not in metric["config"]:
            continue
        cfg = metric["config"]
        out[cfg["column"]] = {
            "score": round(float(metric["value"]), 6),
            "method": cfg.get("method"),
            "threshold": cfg.get("threshold"),
            "drifted": str(test["status"]).endswith("FAIL"),
        }
    return out
