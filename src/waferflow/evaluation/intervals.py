"""How far a figure on real maps can move: bootstrap intervals that resample whole lots.

Wafers of one lot share a process history and often a pattern, so they are not independent
draws: a lot split judges a model on lots, and so do these intervals. Each resample draws the
evaluated lots with replacement (every wafer of a drawn lot comes along) and recomputes macro-F1
and each class's recall; the interval is the percentile interval of ``n_resamples`` of them
(the resamples of :func:`scipy.stats.bootstrap`; a class's recall over the resamples that hold
the class). Macro-F1 averages the classes present in each resample's maps, as
:func:`waferflow.evaluation.metrics.classification_metrics` does on the maps it is given.

Read two models' figures on the same lots against these before calling one better: on the real
test lots of this project (1 098 maps, 630 lots) macro-F1's 95 % interval is about 0.05 wide.
Two models on the same lots: ``baseline``, the interval of their difference (paired).

Example:
    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1, 1, 0])
    >>> lots = np.array(["a", "a", "b", "b", "c", "c"])
    >>> lot_intervals(y, y, lots, n_resamples=200)["macro_f1"]
    [1.0, 1.0]
    >>> out = lot_intervals(y, np.array([0, 0, 1, 1, 0, 0]), lots, n_resamples=200)
    >>> out["recall"]["Donut"][0] < 2 / 3 < out["recall"]["Donut"][1]
    True
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap

from waferflow.classes import CLASSES

__all__ = ["lot_intervals"]


def _figures(y_true: np.ndarray, y_pred: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes these maps hold, then the recall of each ``present`` class (NaN
    where these maps hold none of it)."""
    k = len(CLASSES)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support > 0, 2 * tp / (support + predicted), np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
    return np.concatenate([[np.nanmean(f1)], recall[present]])


def lot_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    baseline: np.ndarray | None = None,
) -> dict:
    """``level`` bootstrap intervals of macro-F1 and per-class recall, whole ``groups`` (lots)
    resampled: ``{"macro_f1": [low, high], "recall": {class: [low, high]}, ...}`` rounded to 4
    decimals; ``None`` bounds and a ``reason`` for fewer than two lots. With ``baseline`` (another
    model's predictions of the same wafers) the intervals are of the difference ``y_pred`` minus
    ``baseline``, both scored on the same resampled lots (paired): is one model better on these
    lots, or only on this draw of them?"""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    baseline = None if baseline is None else np.asarray(baseline, dtype=np.int64)
    groups = np.asarray(groups)
    if not len(y_true) == len(y_pred) == len(groups):
        raise ValueError(f"y_true, y_pred and groups differ in length: {len(y_true)}, {len(y_pred)}, {len(groups)}")
    if baseline is not None and len(baseline) != len(y_true):
        raise ValueError(f"baseline has {len(baseline)} predictions for {len(y_true)} wafers")
    present = np.unique(y_true)
    codes, members = np.unique(groups, return_inverse=True)
    wafers_of = np.split(np.argsort(members, kind="stable"), np.cumsum(np.bincount(members))[:-1])

    head = {"level": level, "resampled": "lots", "lots": int(len(codes)), "n_resamples": n_resamples, "seed": seed}
    if baseline is not None:
        head["of"] = "difference to the baseline"
    if len(codes) < 2:  # nothing varies between lots to resample: no interval, said so
        none = {"macro_f1": None, "recall": dict.fromkeys((CLASSES[c] for c in present), None)}
        return {**head, **none, "reason": f"{len(codes)} lot: an interval needs two or more"}

    def statistic(drawn: np.ndarray) -> np.ndarray:
        rows = np.concatenate([wafers_of[g] for g in drawn])
        figures = _figures(y_true[rows], y_pred[rows], present)
        return figures if baseline is None else figures - _figures(y_true[rows], baseline[rows], present)

    with warnings.catch_warnings():  # every lot alike: the interval is the figure itself
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap(
            (np.arange(len(codes)),),
            statistic,
            vectorized=False,
            n_resamples=n_resamples,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(result.bootstrap_distribution, [tail, 100 - tail], axis=-1)

    def bounds(i: int) -> list[float]:
        return [round(float(low[i]), 4), round(float(high[i]), 4)]

    return {
        **head,
        "macro_f1": bounds(0),
        "recall": {CLASSES[c]: bounds(i + 1) for i, c in enumerate(present)},
    }
