"""Evaluate a WaferUNet on a split: metrics, plots, and (optionally) real labeled wafer maps.

Example:
    >>> report = evaluate_arrays(net, WaferArrays.from_parquet("data/processed/test.parquet"),
    ...                          Path("reports/evaluation"))  # doctest: +SKIP
    >>> report["classification"]["macro_f1"]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from waferflow.data.arrays import WaferArrays
from waferflow.data.split import resize_frame
from waferflow.evaluation.intervals import lot_intervals
from waferflow.evaluation.metrics import class_summary, classification_metrics, mask_metrics
from waferflow.evaluation.plots import plot_confusion, plot_error_gallery, plot_roc, plot_worst_errors
from waferflow.evaluation.real_maps import PARTS, load_real_frame
from waferflow.models.predictor import WaferPredictor, as_predictor
from waferflow.models.wafer_unet import WaferUNet
from waferflow.patterns.features import original_shapes
from waferflow.patterns.trees import PatternClassifier

__all__ = ["evaluate_arrays", "evaluate_real_data", "load_real_arrays"]


def evaluate_arrays(
    model: WaferPredictor | WaferUNet,
    arrays: WaferArrays,
    plot_dir: Path | None = None,
    title: str = "test split",
    prefix: str = "",
    n_worst: int = 12,
    patterns: PatternClassifier | None = None,
    intervals_by: str | None = None,
) -> dict:
    """Metrics of ``model`` on labeled ``arrays``; PNG plots into ``plot_dir`` when given. With
    ``patterns`` the class is the served blend of the U-Net, the pattern trees and (when served)
    the density CNN, and ``components`` records each one alone. With ``intervals_by`` (a column of ``arrays.frame``,
    the lot) ``intervals`` holds 95 % bootstrap intervals of the served class's macro-F1 and
    recalls, whole groups resampled (:func:`~waferflow.evaluation.intervals.lot_intervals`)."""
    arrays = arrays.take(np.flatnonzero(arrays.labels >= 0))
    probs, pred_masks = as_predictor(model).predict(arrays.grids)
    y_true = arrays.labels
    components = {}
    if patterns is not None:
        parts = patterns.components(arrays.grids, original_shapes(arrays.frame, arrays.grids))
        components = {"unet": class_summary(y_true, probs)} | {k: class_summary(y_true, p) for k, p in parts.items()}
        probs = patterns.mix(probs, *parts.values())
    report = {
        "classification": classification_metrics(y_true, probs),
        "mask": mask_metrics(arrays.targets, pred_masks),
        **({"components": components} if components else {}),
    }
    if intervals_by is not None:
        report["intervals"] = lot_intervals(y_true, probs.argmax(1), arrays.frame[intervals_by].to_numpy())
    if plot_dir is not None:
        plots = {
            "confusion_matrix": plot_confusion(
                y_true, probs.argmax(1), plot_dir / f"{prefix}confusion_matrix.png", title
            ),
            "roc": plot_roc(y_true, probs, plot_dir / f"{prefix}roc.png", title),
            "worst_errors": plot_worst_errors(
                arrays.grids,
                arrays.targets,
                pred_masks,
                y_true,
                probs,
                plot_dir / f"{prefix}worst_errors.png",
                n=n_worst,
            ),
            "error_gallery": plot_error_gallery(
                arrays.grids, y_true, probs, plot_dir / f"{prefix}error_gallery.png", title
            ),
        }
        report["plots"] = {k: str(v) for k, v in plots.items()}
    return report


def load_real_arrays(
    data_dir: Path, image_size: tuple[int, int], part: str | None = None
) -> tuple[WaferArrays | None, dict]:
    """The labeled real wafers under ``data_dir`` (only the ``dev`` or ``test`` lots when ``part``
    says so, see :mod:`waferflow.evaluation.real_maps`), resized to the model input.

    Returns ``(None, {"available": False, "reason": ...})`` when there is none.
    """
    frame, info = load_real_frame(data_dir, part)
    if frame is None:
        return None, info
    return WaferArrays.from_frame(resize_frame(frame, image_size)), info


def evaluate_real_data(
    net: WaferUNet,
    frame: pd.DataFrame,
    info: dict,
    image_size: tuple[int, int],
    plot_dir: Path,
    patterns: PatternClassifier | None = None,
) -> dict:
    """Evaluate on real labeled wafers (``frame, info`` from :func:`load_real_frame`), apart from the
    generated test split: the ``test`` lots (reported) and the ``dev`` lots (looked at), each with
    its own plots."""
    out = {**info, "parts": {}}
    for part in PARTS:
        rows = frame[frame["part"] == part]
        if rows.empty:
            out["parts"][part] = {"available": False, "reason": f"no labeled real wafer in the {part} lots"}
            continue
        arrays = WaferArrays.from_frame(resize_frame(rows, image_size))
        report = evaluate_arrays(
            net,
            arrays,
            plot_dir,
            title=f"real {part} lots: {Path(info['source']).name}",
            prefix=f"real_{part}_",
            patterns=patterns,
            intervals_by="lot_id",
        )
        out["parts"][part] = {
            "available": True,
            "wafers": int(len(rows)),
            "lots": int(rows["lot_id"].nunique()),
            **report,
        }
    return out


def real_summary(real: dict, model_version: str | None = None) -> dict:
    """``metrics/evaluate_real.json``: the real test lots' figures first (the headline), then the
    dev lots'; per part macro-F1, accuracy, per-class precision/recall/F1 and their 95 % intervals
    over the part's lots (``intervals``)."""
    if not real.get("available"):
        return real
    out = {k: real[k] for k in ("available", "source", "split", "wafers", "lots")}
    out["model_version"] = model_version
    for part in ("test", "dev"):
        rep = real["parts"][part]
        if not rep.get("available"):
            out[part] = rep
            continue
        cls = rep["classification"]
        out[part] = {
            "wafers": rep["wafers"],
            "lots": rep["lots"],
            "macro_f1": cls["macro_f1"],
            "accuracy": cls["accuracy"],
            "min_recall": min(v["recall"] for v in cls["per_class"].values() if v["support"]),
            "per_class": cls["per_class"],
            "confusion_matrix": cls["confusion_matrix"],
            **({"components": rep["components"]} if "components" in rep else {}),
            **({"intervals": rep["intervals"]} if "intervals" in rep else {}),
            "plots": rep.get("plots", {}),
        }
    return out
