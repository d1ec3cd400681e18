"""``patterns`` in ``params.yaml`` (light to import: no scikit-learn)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from waferflow.classes import CLASSES

__all__ = ["DensityCnnConfig", "OwnMapsConfig", "PatternsConfig"]


class OwnMapsConfig(BaseModel):
    """Generated maps of the trees' own, drawn by the patterns stage with the ``synth`` settings
    and ``generator`` overrides: the trees then fit on these and on the training split's wafers
    that are not generated (a fab's own labeled maps), not on the split's generated ones.

    Args:
        per_class: maps a class, in each draw.
        seed: the generator's seed for them (their die layouts too).
        draws: independent draws of ``per_class`` maps a class, draw ``k`` with seed ``seed + k``:
            each its own ``synth.n_products`` die layouts and its own lots. On the real dev lots
            (stop 40): the trees alone 0.835 (seed 7) / 0.837 (seed 8) / both 0.844, but the
            served blend (weight 0.3) 0.840 -> 0.836 and the promotion gate refused it (dev
            Scratch recall -0.03), so the default stays one draw for the trees (the density CNN
            takes draws of its own: :class:`DensityCnnConfig`).
        generator: overrides of ``synth.generator`` (any :class:`~waferflow.synth.generator.GeneratorConfig`
            field), e.g. smaller wafers: the trees' features gain from maps the U-Net does not.
    """

    model_config = ConfigDict(extra="forbid")

    per_class: int = Field(1200, ge=1)
    seed: int = 7
    draws: int = Field(1, ge=1)
    generator: dict[str, Any] = Field(default_factory=dict)


class DensityCnnConfig(BaseModel):
    """The texture-free density CNN's share of the served class (:mod:`waferflow.patterns.density`).

    The patterns stage fits ``seeds`` CNNs (seeds ``seed``, ``seed + 1``, ...) on the trees' own
    maps and serves the mean of their probabilities (each the mean over the wafer's 8 symmetries)
    as one ONNX file. Served probabilities = ``unet_weight`` x U-Net + ``weight`` x CNN + the rest x
    trees. On the real *dev* lots (stop 45, ``benchmarks/density_cnn.py``): the CNN alone 0.80-0.81
    (U-Net 0.75, trees 0.83); weight 0.2 beside U-Net 0.3 took the served blend 0.850 -> 0.855,
    Loc recall 0.67 -> 0.71. With ``lines`` (stop 48, ``--lines``) the CNN alone reads 0.82-0.84
    (Scratch recall 0.71 -> 0.80), and the default serves it at weight 0.5 beside U-Net 0.1
    (dev 0.855 -> 0.862; chosen on halves of the dev lots, it gained on the other half in 17 of 20).

    Args:
        weight: its share of the served probabilities (taken from the trees' share).
        seeds: CNNs fitted and averaged.
        epochs, width: each CNN's training epochs and first-block channels.
        sigma: the Gaussian (in dies of the model input) the fail density is smoothed with.
        lines: two more picture channels that keep what is one die wide (a finer density and a
            line response, :func:`~waferflow.patterns.density.density_picture`).
        seed: the first CNN's seed.
        draws: draws of the own maps (:class:`OwnMapsConfig`, draw ``k`` on seed ``own_maps.seed + k``)
            the CNN fits on, beside a fab's labeled wafers; None: the trees' ``own_maps.draws``. Draws
            beyond the trees' are drawn for the CNN alone (their pictures only, no features). Two
            draws x 4 epochs (the steps of one x 8) took the CNN alone on the real dev lots 0.833 ->
            0.849 and the served blend 0.871 -> 0.874 (stop 51, ``benchmarks/density_cnn.py
            --lines --draws 2 --epochs 4``). Needs ``own_maps``.
    """

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.2, gt=0, lt=1)
    seeds: int = Field(4, ge=1)
    epochs: int = Field(8, ge=1)
    width: int = Field(16, ge=1)
    sigma: float = Field(1.5, gt=0)
    lines: bool = False
    seed: int = 0
    draws: int | None = Field(None, ge=1)


class PatternsConfig(BaseModel):
    """The boosted trees on pattern features and their share of the served class
    (:mod:`waferflow.patterns.trees`).

    Args:
        enabled: fit the trees and blend them into the served class probabilities; false: the
            U-Net alone (the patterns stage still runs and records why it fitted nothing).
        unet_weight: served probabilities = ``unet_weight`` x U-Net + (1 - it) x trees (with
            ``density_cnn``, the CNN's ``weight`` comes out of the trees' share). 0.3 was
            the best weight on the real *dev* lots with the trees on their own maps (stop 39:
            0 / 0.1 / 0.2 / 0.3 / 0.4 / 0.5 tried, 0.835 / 0.836 / 0.838 / 0.840 / 0.837 / 0.830);
            0.5 had been the best on the generated test split (``benchmarks/feature_classifier.py``).
            The default since stop 48 is 0.1, beside the density CNN's 0.5 (:class:`DensityCnnConfig`).
        class_weights: decision weights on the served probabilities, class -> factor (a class not
            named: 1); the blend is multiplied by them and each wafer's row renormalised. The
            generated Loc class is narrower than WM-811K's, so the blend under-calls Loc on real
            maps (dev lots, stop 42: Loc precision 0.91, recall 0.60); ``{Loc: 2}`` was chosen on
            the real *dev* lots (factors 1 to 3; chosen on one half of the lots, it gained on the
            other half in 19 of 20 random halvings, +0.004 macro-F1 on average). Empty: the blend as it is.
        max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization: scikit-learn
            ``HistGradientBoostingClassifier`` (class-balanced, no early stopping), the
            benchmark's ``hgb_small``.
        bags: how many such trees, each on a class-stratified bootstrap sample of the training
            split, are averaged (their logits); 1: one fit on all of it.
        seed: the bootstrap's random state (and the trees').
        own_maps: fit on generated maps of their own (:class:`OwnMapsConfig`); None: on the
            training split's labeled wafers, as the U-Net.
        density_cnn: the density CNN blended in too (:class:`DensityCnnConfig`); None: U-Net and
            trees only.
        feature_jobs: worker processes the stage computes features in (-1: every core this
            process may use; 1: in this process). The features are the same either way.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    unet_weight: float = Field(0.3, ge=0, le=1)
    class_weights: dict[str, float] = Field(default_factory=dict)
    max_iter: int = Field(200, ge=1)
    learning_rate: float = Field(0.08, gt=0)
    max_leaf_nodes: int = Field(15, ge=2)
    min_samples_leaf: int = Field(40, ge=1)
    l2_regularization: float = Field(1.0, ge=0)
    bags: int = Field(5, ge=1)
    seed: int = 0
    own_maps: OwnMapsConfig | None = None
    density_cnn: DensityCnnConfig | None = None
    feature_jobs: int = -1

    @model_validator(mode="after")
    def _shares(self) -> "PatternsConfig":
        if self.density_cnn is not None and self.unet_weight + self.density_cnn.weight > 1:
            raise ValueError(
                f"unet_weight {self.unet_weight} + density_cnn.weight {self.density_cnn.weight} exceed 1: "
                "the trees' share would be negative"
            )
        if self.density_cnn is not None and self.density_cnn.draws is not None and self.own_maps is None:
            raise ValueError(
                f"density_cnn.draws {self.density_cnn.draws}: the CNN's draws are draws of the own maps, "
                "and own_maps is null (the CNN fits on the training split then)"
            )
        return self

    @property
    def density_draws(self) -> int | None:
        """The draws of the own maps the density CNN fits on: ``density_cnn.draws``, else the
        trees' ``own_maps.draws``; None without a CNN or without own maps."""
        if self.density_cnn is None or self.own_maps is None:
            return None
        return self.own_maps.draws if self.density_cnn.draws is None else self.density_cnn.draws

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        for name, factor in v.items():
            if name not in CLASSES:
                raise ValueError(f"class_weights: {name!r} is not a class ({', '.join(CLASSES)})")
            if not (math.isfinite(factor) and factor > 0):
                raise ValueError(f"class_weights: {name} x {factor} -- a factor must be a positive number")
        return v

    @field_validator("feature_jobs")
    @classmethod
    def _jobs(cls, v: int) -> int:
        if v == 0:
            raise ValueError(
                "feature_jobs must be a count of processes, or negative as joblib counts (-1: every core), not 0"
            )
        return v
