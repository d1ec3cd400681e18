"""``patterns`` in ``params.yaml`` (light to import: no scikit-learn)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PatternsConfig"]


class PatternsConfig(BaseModel):
    """The boosted trees on pattern features and their share of the served class
    (:mod:`waferflow.patterns.trees`).

    Args:
        enabled: fit the trees and blend them into the served class probabilities; false: the
            U-Net alone (the patterns stage still runs and records why it fitted nothing).
        unet_weight: served probabilities = ``unet_weight`` x U-Net + (1 - it) x trees. 0.5 was
            the best weight on the *generated* test split in ``benchmarks/feature_classifier.py``
            (0 / 0.25 / 0.5 / 0.75 / 1 tried; real maps did not choose it).
        max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization: scikit-learn
            ``HistGradientBoostingClassifier`` (class-balanced, no early stopping), the
            benchmark's ``hgb_small``.
        bags: how many such trees, each on a class-stratified bootstrap sample of the training
            split, are averaged (their logits); 1: one fit on all of it.
        seed: the bootstrap's random state (and the trees').
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    unet_weight: float = Field(0.5, ge=0, le=1)
    max_iter: int = Field(200, ge=1)
    learning_rate: float = Field(0.08, gt=0)
    max_leaf_nodes: int = Field(15, ge=2)
    min_samples_leaf: int = Field(40, ge=1)
    l2_regularization: float = Field(1.0, ge=0)
    bags: int = Field(5, ge=1)
    seed: int = 0
