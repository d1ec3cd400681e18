"""Wafer-class metrics (scikit-learn) and per-die mask metrics (IoU, Dice per class).

Mask metrics pool every annotated die of the evaluated wafers: per class
IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN). ``mean_iou`` / ``mean_dice``
average the eight pattern classes present in the ground truth; ``mean_iou_with_background``
adds the background class, as segmentation benchmarks usually report it.

Example:
    >>> import numpy as np
    >>> mask_metrics(np.array([[[0, 1]]]), np.array([[[0, 1]]]))["mean_iou"]
    1.0
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

from waferflow.classes import CLASSES, PATTERN_CLASSES
from waferflow.data.arrays import IGNORE_INDEX

__all__ = ["classification_metrics", "class_summary", "mask_metrics"]


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    labels = list(range(len(CLASSES)))
    y_pred = probs.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = [c for c in labels if (y_true == c).any()]
    auc = {}
    for c in present:
        if 0 < (y_true == c).sum() < len(y_true):
            auc[CLASSES[c]] = round(float(roc_auc_score(y_true == c, probs[:, c])), 6)
    return {
        "n_wafers": int(len(y_true)),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)), 6),
        "per_class": {
            CLASSES[c]: {
                "precision": round(float(p[c]), 6),
                "recall": round(float(r[c]), 6),
                "f1": round(float(f[c]), 6),
                "support": int(s[c]),
            }
            for c in labels
        },
        "roc_auc": auc,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def class_summary(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Wafers, macro-F1, accuracy and recall per present class: the short record of a classifier."""
    cls = classification_metrics(y_true, probs)
    return {
        "wafers": cls["n_wafers"],
        "macro_f1": cls["macro_f1"],
        "accuracy": cls["accuracy"],
        "recall": {c: v["recall"] for c, v in cls["per_class"].items() if v["support"]},
    }


def mask_metrics(true_masks: np.ndarray, pred_masks: np.ndarray) -> dict:
    """IoU and Dice per mask class over annotated dies (``true != IGNORE_INDEX``)."""
    valid = true_masks != IGNORE_INDEX
    n = len(PATTERN_CLASSES) + 1
    if not valid.any():
        return {"per_class": {}, "mean_iou": None, "mean_dice": None, "mean_iou_with_background": None, "n_dies": 0}
    cm = np.bincount(
        true_masks[valid].astype(np.int64) * n + pred_masks[valid].astype(np.int64), minlength=n * n
    ).reshape(n, n)
    tp = np.diag(cm).astype(float)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
    names = ["background", *PATTERN_CLASSES]
    present = [i for i in range(1, n) if cm[i].sum() > 0]
    return {
        "per_class": {
            names[i]: {"iou": round(float(iou[i]), 6), "dice": round(float(dice[i]), 6), "dies": int(cm[i].sum())}
            for i in range(n)
            if cm[i].sum() > 0
        },
        "mean_iou": round(float(np.mean(iou[present])), 6) if present else None,
        "mean_dice": round(float(np.mean(dice[present])), 6) if present else None,
        "mean_iou_with_background": round(float(np.nanmean(iou[[0, *present]])), 6),
        "n_dies": int(valid.sum()),
    }
