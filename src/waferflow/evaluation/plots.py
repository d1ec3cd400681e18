"""Evaluation plots saved as PNG: normalised confusion matrix, one-vs-rest ROC, worst errors."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from waferflow.classes import CLASSES  # noqa: E402
from waferflow.fileio import save_figure  # noqa: E402
from waferflow.viz.wafer_plots import plot_wafer, save_wafer_grid  # noqa: E402

__all__ = ["plot_confusion", "plot_roc", "plot_worst_errors", "plot_error_gallery"]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str = "test split") -> Path:
    fig, ax = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=list(range(len(CLASSES))),
        display_labels=CLASSES,
        normalize="true",
        values_format=".2f",
        cmap="Blues",
        ax=ax,
        xticks_rotation=45,
        colorbar=False,
    )
    ax.set_title(f"confusion matrix, rows normalised ({title})")
    return _save(fig, path)


def plot_roc(y_true: np.ndarray, probs: np.ndarray, path: Path, title: str = "test split") -> Path:
    fig, ax = plt.subplots(figsize=(7, 6))
    for c, name in enumerate(CLASSES):
        positives = y_true == c
        if 0 < positives.sum() < len(y_true):
            RocCurveDisplay.from_predictions(positives, probs[:, c], name=name, ax=ax, plot_chance_level=(c == 0))
    ax.set_title(f"one-vs-rest ROC per class ({title})")
    return _save(fig, path)


def plot_worst_errors(
    grids: np.ndarray,
    true_masks: np.ndarray,
    pred_masks: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    path: Path,
    n: int = 12,
) -> Path:
    """Wrong wafers, most confident first: map with true mask | predicted mask."""
    y_pred = probs.argmax(1)
    wrong = np.flatnonzero(y_pred != y_true)
    order = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:n]
    if len(order) == 0:  # nothing wrong: show the least confident correct ones
        order = np.argsort(probs[np.arange(len(y_true)), y_true])[:n]
    fig, axes = plt.subplots(len(order), 2, figsize=(4.4, 2.2 * max(len(order), 1)), squeeze=False)
    for row, i in enumerate(order):
        true_mask = np.where(true_masks[i] == 255, 0, true_masks[i])
        plot_wafer(axes[row][0], grids[i], true_mask, f"true {CLASSES[y_true[i]]} (mask)")
        plot_wafer(axes[row][1], grids[i], pred_masks[i], f"pred {CLASSES[y_pred[i]]} p={probs[i, y_pred[i]]:.2f}")
    fig.suptitle("worst errors: most confident wrong predictions", fontsize=9)
    return _save(fig, path)


def plot_error_gallery(
    grids: np.ndarray, y_true: np.ndarray, probs: np.ndarray, path: Path, title: str = "test split", per_class: int = 6
) -> Path:
    """One row per true class: its misclassified wafers, most confident first, titled with what the
    model answered (a row that holds none is drawn empty: the class had no error)."""
    y_pred = probs.argmax(1)
    rows = []
    for c, name in enumerate(CLASSES):
        wrong = np.flatnonzero((y_true == c) & (y_pred != c))
        wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:per_class]
        panels = [(grids[i], None, f"{name} -> {CLASSES[y_pred[i]]} {probs[i, y_pred[i]]:.2f}") for i in wrong]
        rows.append(panels or [(np.zeros((2, 2), np.uint8), None, f"{name}: no error")])
    return save_wafer_grid(
        rows, path, f"errors per true class ({title}): true -> predicted, confidence", cols=per_class, title_size=9
    )
