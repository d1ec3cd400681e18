"""Wafer-safe augmentation with albumentations, applied to (die grid, defect mask) pairs.

Kept: 90-degree rotations, horizontal/vertical flips and transposition (the die lattice maps
onto itself, so codes, wafer outline and pattern geometry stay exact), and :class:`DieNoise`
(a few extra background fails, a few pattern fails dropped) as tester noise.

Excluded on purpose: arbitrary-angle rotation, scaling, elastic or grid distortion and crops
resample the die lattice (dies appear or vanish, an Edge-Ring moves off the edge); blur,
brightness, contrast and colour jitter produce values that are no die code; cutout/erasing
removes part of the wafer outline that the edge classes are defined by.

Example:
    >>> import numpy as np
    >>> aug = build_augmentation(AugmentConfig(), seed=0)
    >>> out = aug(image=np.ones((8, 8), np.uint8), mask=np.zeros((8, 8), np.uint8))
    >>> out["image"].shape
    (8, 8)
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

from waferflow.classes import DIE_FAIL, DIE_PASS
from waferflow.data.arrays import IGNORE_INDEX
from waferflow.training.config import AugmentConfig

__all__ = ["AugmentConfig", "DieNoise", "build_augmentation"]


class DieNoise(A.DualTransform):
    """Add background fails and drop fail dies, keeping the mask on fail dies only."""

    def __init__(self, fail_rate: float = 0.01, dropout_rate: float = 0.03, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.fail_rate, self.dropout_rate = fail_rate, dropout_rate

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        shape = data["image"].shape[:2]
        rng = self.random_generator
        return {
            "add": rng.random(shape) < rng.uniform(0, self.fail_rate),
            "drop": rng.random(shape) < rng.uniform(0, self.dropout_rate),
        }

    def apply(self, img: np.ndarray, add: np.ndarray, drop: np.ndarray, **params: Any) -> np.ndarray:
        out = img.copy()
        out[(img == DIE_PASS) & add] = DIE_FAIL
        out[(img == DIE_FAIL) & drop] = DIE_PASS
        return out

    def apply_to_mask(self, mask: np.ndarray, add: np.ndarray, drop: np.ndarray, **params: Any) -> np.ndarray:
        out = mask.copy()
        # A pattern die is a fail die, so a dropped fail leaves the pattern; no-die / unannotated
        # cells (IGNORE_INDEX) stay as they are.
        out[drop & (mask > 0) & (mask != IGNORE_INDEX)] = 0
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fail_rate", "dropout_rate")


def build_augmentation(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    transforms: list[A.BasicTransform] = []
    if cfg.rotate90:
        transforms += [A.RandomRotate90(p=1.0), A.Transpose(p=0.5)]
    if cfg.flips:
        transforms += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if cfg.noise_fail_rate or cfg.dropout_rate:
        transforms.append(DieNoise(cfg.noise_fail_rate, cfg.dropout_rate, p=cfg.noise_probability))
    return A.Compose(transforms, seed=seed)
