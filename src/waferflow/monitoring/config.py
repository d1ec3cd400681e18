"""``drift`` in ``params.yaml`` (light to import: no evidently)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DriftConfig"]


class DriftConfig(BaseModel):
    """Thresholds of the drift check (:mod:`waferflow.monitoring.drift`).

    Args:
        drift_share: The data set has drifted when at least this share of the wafer features
            drifted (evidently's ``DataDriftPreset(drift_share=...)``).
        num_method / cat_method: evidently stat tests for numeric / categorical columns. Default
            normed Wasserstein distance (in reference standard deviations) and Jensen-Shannon
            distance: effect sizes, not significance tests — wafers of one lot and one product
            are not independent samples, so p-value tests (K-S, chi-square) raise false alarms
            on unshifted production windows. None = evidently's choice by sample size.
        num_threshold / cat_threshold: a column drifted above this score (None = evidently's
            default, 0.1; 0.25 keeps unshifted windows of 300 wafers quiet, see the README).
        strong_drift: one wafer feature whose numeric drift score reaches this (1.0 = the
            distribution moved by a reference standard deviation) recommends retraining on its
            own, however few others drifted (a new wafer size moves ``n_dies`` and little else).
        retrain_on_prediction_drift: recommend retraining when the predicted class mix drifted,
            even if few features did.
        class_mix_noise_quantile: the predicted class mix drifted only when its Jensen-Shannon
            distance also exceeds this quantile of the distances that sampling alone gives: pairs
            of windows of the reference's and the current window's sizes drawn lot by lot from the
            reference (``drift.class_mix_noise``). A model that
            spreads its answers over many classes has a large sampling noise at 300 wafers (~0.07
            for nine even classes), close to ``cat_threshold``; without this floor the verdict
            would hang on which way a few borderline wafers fall on one CPU's arithmetic.
        novel_share: the window's share of wafers the open-set triage judged REJECT (novel) above
            which retraining — and a look at those wafers — is recommended (known wafers give
            about ``triage.reject_novelty``, 0.2 %).
        min_wafers: a current window with fewer wafers is not judged (the check fails loudly):
            wafers of a lot share their process conditions, so a small window holds few independent
            lots (``benchmarks/drift_detection.py``: 10 % false alarms at 100–150 wafers, 0 % at 300).
        prediction_log: where the inference engine appends every prediction (a folder, relative
            to the project root, or an ``s3://bucket/prefix`` URI).
        window_days: the current window: the prediction log's last this many days.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    drift_share: float = Field(0.3, gt=0, le=1)
    num_method: str | None = "wasserstein"
    cat_method: str | None = "jensenshannon"
    num_threshold: float | None = 0.25
    cat_threshold: float | None = 0.1
    strong_drift: float | None = Field(1.0, gt=0)
    retrain_on_prediction_drift: bool = True
    class_mix_noise_quantile: float = Field(0.99, ge=0.5, lt=1)
    novel_share: float = Field(0.05, gt=0, lt=1)
    min_wafers: int = Field(300, ge=1)
    prediction_log: str = "data/prediction_log"
    window_days: int = Field(7, ge=1)
