"""PASS / REVIEW / REJECT: calibrated on the validation split, decided per wafer with its reason.

Two questions, each answered with split conformal calibration on labeled validation wafers
(Vovk et al., "Algorithmic Learning in a Random World"; Angelopoulos & Bates, "A Gentle
Introduction to Conformal Prediction", 2021):

* **Is it like anything known?** The novelty p-value of a wafer is the share of validation
  wafers (plus one) at least as novel: ``(1 + #{val >= s}) / (n + 1)``. Below
  ``reject_novelty`` it is REJECT (novel: no class applies); below ``review_novelty`` REVIEW.
  On known wafers these fire at those rates, by construction.
* **Is the class certain?** Class-conditional (Mondrian) conformal prediction sets with the
  score ``1 - p_y``: class ``y`` is in a wafer's set when ``1 - p_y`` is within the
  ``1 - set_alpha`` quantile of that score on validation wafers of class ``y``, so a class-``y``
  wafer's set holds ``y`` with probability >= ``1 - set_alpha`` for every class alike. A set
  of one class — the predicted one — is PASS; an empty set or several classes is REVIEW.

The thresholds are stored in the export's metadata (``triage``), so the served engine decides
exactly as calibrated.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    >>> cal = calibrate_triage(probs, np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]),
    ...                        ["A", "B"], set_alpha=0.2, review_novelty=0.2, reject_novelty=0.05)
    >>> [t["decision"] for t in decide(np.array([[0.95, 0.05], [0.5, 0.5]]), np.array([0.0, 9.0]), cal)]
    ['PASS', 'REJECT']
"""

from __future__ import annotations

import numpy as np

__all__ = ["DECISIONS", "calibrate_triage", "decide", "novelty_p_values", "prediction_sets"]

DECISIONS = ("PASS", "REVIEW", "REJECT")


def _conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest score (inf when n is too small for alpha)."""
    s = np.sort(np.asarray(scores, dtype=float))
    k = int(np.ceil((len(s) + 1) * (1 - alpha)))
    return float(s[k - 1]) if 1 <= k <= len(s) else float("inf")


def calibrate_triage(
    probs: np.ndarray,
    labels: np.ndarray,
    novelty: np.ndarray,
    classes: list[str],
    set_alpha: float = 0.05,
    review_novelty: float = 0.02,
    reject_novelty: float = 0.002,
) -> dict:
    """Thresholds from labeled validation wafers: their calibrated probabilities ``(N, C)``,
    labels and novelty scores. JSON-ready (it goes into the export metadata)."""
    probs, labels, novelty = np.asarray(probs), np.asarray(labels), np.asarray(novelty, dtype=float)
    if not 0 < reject_novelty < review_novelty < 1:
        raise ValueError(f"need 0 < reject_novelty ({reject_novelty}) < review_novelty ({review_novelty}) < 1")
    if not len(labels):
        raise ValueError("triage calibration needs labeled validation wafers; there are none")
    # A class without validation wafers (a rare class whose lots all went elsewhere) gets the
    # marginal threshold of all classes, and is listed as such.
    marginal = _conformal_quantile(1 - probs[np.arange(len(labels)), labels], set_alpha)
    missing = [c for c in range(len(classes)) if not (labels == c).any()]
    thresholds = [
        marginal if c in missing else _conformal_quantile(1 - probs[labels == c, c], set_alpha)
        for c in range(len(classes))
    ]
    reference = np.sort(novelty)
    return {
        "classes": list(classes),
        "set_alpha": set_alpha,
        "class_thresholds": [round(t, 6) if np.isfinite(t) else 1.0 for t in thresholds],
        "review_novelty": review_novelty,
        "reject_novelty": reject_novelty,
        "novelty_reference": [round(float(v), 5) for v in reference],
        "calibration_wafers": int(len(labels)),
        "marginal_classes": [classes[c] for c in missing],
    }


def novelty_p_values(novelty: np.ndarray, calibration: dict) -> np.ndarray:
    """Share of the calibration wafers (plus one) at least as novel as each score."""
    ref = np.asarray(calibration["novelty_reference"], dtype=float)
    at_least = len(ref) - np.searchsorted(ref, np.asarray(novelty, dtype=float), side="left")
    return (1 + at_least) / (len(ref) + 1)


def prediction_sets(probs: np.ndarray, calibration: dict) -> np.ndarray:
    """``(N, C)`` bool: class ``c`` is in a wafer's conformal set."""
    return (1 - np.asarray(probs)) <= np.asarray(calibration["class_thresholds"])[None, :]


def decide(probs: np.ndarray, novelty: np.ndarray, calibration: dict) -> list[dict]:
    """Per wafer: ``decision`` (PASS / REVIEW / REJECT), ``reason``, ``novelty`` (score),
    ``novelty_p`` and ``prediction_set`` (class names)."""
    classes = calibration["classes"]
    p_values = novelty_p_values(novelty, calibration)
    sets = prediction_sets(probs, calibration)
    level = f"{100 * (1 - calibration['set_alpha']):g} %"
    out = []
    for prob, score, p, members in zip(np.asarray(probs), np.asarray(novelty), p_values, sets):
        names = [classes[c] for c in np.flatnonzero(members)]
        predicted = classes[int(np.argmax(prob))]
        above = f"more unusual than {100 * (1 - p):.1f} % of known validation wafers"
        if p < calibration["reject_novelty"]:
            decision, reason = "REJECT", f"novel: {above}; no known class applies"
        elif p < calibration["review_novelty"]:
            decision, reason = "REVIEW", f"unusual: {above}"
        elif not names:
            decision, reason = "REVIEW", f"uncertain: no class fits at {level} ({predicted} is the closest)"
        elif names != [predicted]:
            decision, reason = "REVIEW", f"uncertain: could be {' or '.join(names)} at {level}"
        else:
            decision, reason = "PASS", f"{predicted} is the only class at {level}; novelty typical"
        out.append(
            {
                "decision": decision,
                "reason": reason,
                "novelty": round(float(score), 4),
                "novelty_p": round(float(p), 5),
                "prediction_set": names,
            }
        )
    return out
