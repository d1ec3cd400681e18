"""Self-training on the unlabeled pool (semi-supervised): the trained model's confident answers
become pseudo-labels for one more round of training.

With ``train.pseudo_label_threshold`` > 0 the train stage fits a *teacher* as usual, calibrates
it, labels the unlabeled split with it, keeps the maps whose calibrated confidence reaches the
threshold, and fine-tunes the teacher on the training split plus those maps (class loss only:
a pseudo-label carries no per-die mask). The registered model is that student. Classes the
teacher is unsure of stay out, so a high threshold trades pool coverage for label noise.

Example:
    >>> pseudo = pseudo_label(predictor, read_frame("data/processed/unlabeled.parquet"), 0.95)  # doctest: +SKIP
    >>> pseudo["label"].value_counts()  # doctest: +SKIP
"""

from __future__ import annotations

import json

import pandas as pd

from waferflow.classes import CLASSES
from waferflow.data.arrays import WaferArrays
from waferflow.models.predictor import WaferPredictor
from waferflow.models.scoring import score_pool

__all__ = ["pseudo_label", "summary"]


def pseudo_label(predictor: WaferPredictor, unlabeled: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The rows of ``unlabeled`` (a resized canonical table) the predictor classifies with a
    calibrated confidence of at least ``threshold``, labeled with its answer; no defect mask; the
    confidence is kept in ``attrs["pseudo_confidence"]``."""
    if unlabeled.empty:
        return unlabeled.copy()
    probs = score_pool(predictor, WaferArrays.from_frame(unlabeled).grids).probs
    keep = probs.max(1) >= threshold
    out = unlabeled[keep].copy()
    out["label"] = [CLASSES[i] for i in probs[keep].argmax(1)]
    out["defect_mask"] = None
    out["attrs"] = [
        json.dumps({**(json.loads(a) if isinstance(a, str) and a else {}), "pseudo_confidence": round(float(c), 4)})
        for a, c in zip(out["attrs"], probs[keep].max(1))
    ]
    return out.reset_index(drop=True)


def summary(pseudo: pd.DataFrame, pool: int, threshold: float) -> dict:
    """What self-training used: maps kept of the pool, per class."""
    counts = pseudo["label"].value_counts()
    return {
        "pseudo_label_threshold": threshold,
        "pseudo_labeled": int(len(pseudo)),
        "unlabeled_pool": int(pool),
        "pseudo_per_class": {c: int(counts.get(c, 0)) for c in CLASSES if counts.get(c, 0)},
    }
