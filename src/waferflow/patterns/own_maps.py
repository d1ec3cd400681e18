"""Generated maps of the pattern trees' own (``patterns.own_maps``).

What the trees gain from is the number of distinct generated maps, which the U-Net's train
stage cannot afford: trees fitted on fresh maps reached 0.820 / 0.829 / 0.836 macro-F1 on the
real dev lots with 600 / 1 200 / 3 000 maps a class (6 000 in one draw: 0.838, stop 36), so the patterns
stage draws the trees' maps apart from the split's, with the ``synth`` settings and optional
generator overrides (smaller wafers and WM-811K-like scratches added nothing at 3 000 a class).
A second draw of 3 000 a class on a second seed (``draws: 2``, its own die layouts and lots) took
the trees alone 0.835 -> 0.844 there (stop 40, with the Loc overrides of stop 38), the served blend
0.840 -> 0.836: one draw stays the default. A fab's
own labeled maps in the training split stay in the trees' fit: only the generated wafers are
replaced.
"""

from __future__ import annotations

import numpy as np

from waferflow.classes import CLASSES
from waferflow.data.resize import resize_grid
from waferflow.patterns.config import OwnMapsConfig
from waferflow.patterns.features import grid_features
from waferflow.synth.dataset import DatasetConfig, generate_dataset
from waferflow.synth.generator import GeneratorConfig

GENERATED_SOURCE = "synth"  # WaferRecord.source of the generator's maps

__all__ = ["GENERATED_SOURCE", "own_dataset_config", "own_map_grids", "own_map_features"]


def own_dataset_config(synth: DatasetConfig, own: OwnMapsConfig, draw: int = 0) -> DatasetConfig:
    """``synth`` with the own maps' seed (``own.seed + draw``), count and generator overrides;
    labeled maps only.

    >>> own = OwnMapsConfig(per_class=5, draws=2, generator={"diameter_range": (18, 80)})
    >>> cfg = own_dataset_config(DatasetConfig(), own, draw=1)
    >>> cfg.seed, cfg.labeled_per_class, cfg.unlabeled_count, cfg.test_per_class, cfg.generator.diameter_range
    (8, 5, 0, 0, (18, 80))
    """
    if not 0 <= draw < own.draws:
        raise ValueError(f"draw {draw}: patterns.own_maps has draws 0 to {own.draws - 1}")
    generator = GeneratorConfig(**{**synth.generator.model_dump(), **own.generator})  # unknown keys fail here
    return DatasetConfig(
        **{
            **synth.model_dump(exclude={"generator"}),
            "seed": own.seed + draw,
            "product_seed": None,
            "labeled_per_class": own.per_class,
            "unlabeled_count": 0,
            "test_per_class": 0,
            "generator": generator,
        }
    )


def own_map_grids(
    synth: DatasetConfig,
    own: OwnMapsConfig,
    image_size: tuple[int, int],
    progress: bool = False,
    first: int = 0,
) -> tuple[list[np.ndarray], list[tuple[int, int]], np.ndarray]:
    """The own maps as the split stage and the served engine see them: each grid resized to the
    model input (``image_size``), its original shape, and its class index; draws ``first`` to
    ``own.draws - 1``, one after the other."""
    records = []
    for draw in range(first, own.draws):
        records += generate_dataset(own_dataset_config(synth, own, draw), progress=progress)["labeled"]
    grids = [resize_grid(r.die_grid, tuple(image_size)) for r in records]
    shapes = [r.die_grid.shape for r in records]
    return grids, shapes, np.array([CLASSES.index(r.label) for r in records])


def own_map_features(
    synth: DatasetConfig,
    own: OwnMapsConfig,
    image_size: tuple[int, int],
    progress: bool = False,
    n_jobs: int = 1,
    grids: bool = False,
) -> tuple[np.ndarray, ...]:
    """Pattern features and class indices of the own maps (:func:`own_map_grids`), each grid
    resized back to its original shape first (features in ``n_jobs`` processes:
    :func:`~waferflow.patterns.features.grid_features`); with ``grids``, also the model-input
    grids themselves, ``(N, H, W)`` (the density CNN's input)."""
    resized, shapes, y = own_map_grids(synth, own, image_size, progress)
    x = grid_features(resized, shapes, progress=progress, desc="pattern features: own generated maps", n_jobs=n_jobs)
    return (x, y, np.stack(resized)) if grids else (x, y)
