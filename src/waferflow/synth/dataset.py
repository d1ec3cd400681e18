"""Build the embedded default data set from the generator: labeled pool, unlabeled pool, test set.

Wafers come in lots of ``wafers_per_lot``; every lot is of one product, and every product has
its own die layout (diameter, die aspect, edge exclusion, flat), as in a real fab. The test set
is drawn from products the pools never use, so it measures generalisation to unseen layouts.
Unlabeled wafers keep their true class in ``attrs["true_label"]`` (the active-learning oracle).

Example:
    >>> from waferflow.synth.dataset import DatasetConfig, generate_dataset
    >>> sets = generate_dataset(DatasetConfig(labeled_per_class=2, unlabeled_count=3, test_per_class=1))
    >>> {name: len(recs) for name, recs in sets.items()}
    {'labeled': 18, 'unlabeled': 3, 'test': 9}
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from waferflow.classes import CLASSES
from waferflow.data.records import WaferRecord
from waferflow.synth.generator import GeneratorConfig, WaferGenerator

__all__ = ["DatasetConfig", "generate_dataset"]

_EPOCH = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


class DatasetConfig(BaseModel):
    """Sizes and class balance of the generated data set.

    Args:
        seed: Base seed of everything generated.
        labeled_per_class: Labeled wafers per class; an int for all, or a mapping class -> count
            (classes left out get ``0``).
        unlabeled_count: Size of the unlabeled pool.
        unlabeled_class_weights: Class mix of the unlabeled pool (relative weights); default is
            WM-811K-like: mostly ``none``, rare Near-full.
        test_per_class: Wafers per class in the fixed test set.
        n_products: Distinct die layouts used by the pools (the test set gets as many new ones).
        product_seed: Seed of the die layouts (products); None = ``seed``. Windows of one fab's
            production share it: other seeds draw other wafers of the same products.
        wafers_per_lot: Wafers per lot (WM-811K: 25).
        generator: Sampling ranges of the generator.
        gallery_per_class: Wafers per class in the generate stage's PNG gallery.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 42
    labeled_per_class: int | dict[str, int] = 300
    unlabeled_count: int = 2000
    unlabeled_class_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "Center": 4.3,
            "Donut": 0.6,
            "Edge-Loc": 5.2,
            "Edge-Ring": 9.7,
            "Loc": 3.6,
            "Near-full": 0.2,
            "Random": 0.9,
            "Scratch": 1.2,
            "none": 74.3,
        }
    )
    test_per_class: int = 100
    n_products: int = 400
    product_seed: int | None = None
    wafers_per_lot: int = 10
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    gallery_per_class: int = 8


def _per_class(counts: int | dict[str, int]) -> dict[str, int]:
    if isinstance(counts, int):
        return {c: counts for c in CLASSES}
    unknown = set(counts) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes in labeled_per_class: {sorted(unknown)}")
    return {c: int(counts.get(c, 0)) for c in CLASSES}


def _build(
    gen: WaferGenerator,
    labels: list[str],
    subset: str,
    cfg: DatasetConfig,
    product_offset: int,
    rng: np.random.Generator,
    progress: bool,
) -> list[WaferRecord]:
    order = rng.permutation(len(labels))  # lots mix classes, as in a fab
    layouts = [gen.layout(f"P{product_offset + i:04d}", product_offset + i) for i in range(cfg.n_products)]
    out = []
    for pos, idx in enumerate(tqdm(order, desc=f"generate {subset}", disable=not progress, unit="wafer")):
        lot = pos // cfg.wafers_per_lot
        lot_rng = np.random.default_rng([cfg.seed, product_offset, lot])
        layout = layouts[int(lot_rng.integers(len(layouts)))]
        rec = gen.make(
            labels[idx],
            index=int(idx) + product_offset * 1000,
            layout=layout,
            lot_id=f"{subset.upper()}{cfg.seed}-{lot:05d}",
            wafer_id=str(pos % cfg.wafers_per_lot + 1),
        )
        rec.timestamp = _EPOCH + timedelta(hours=6 * lot, minutes=3 * (pos % cfg.wafers_per_lot))
        out.append(rec)
    return out


def generate_dataset(cfg: DatasetConfig, progress: bool = False) -> dict[str, list[WaferRecord]]:
    """Generate the ``labeled``, ``unlabeled`` and ``test`` sets (deterministic per seed)."""
    rng = np.random.default_rng(cfg.seed)
    gen = WaferGenerator(seed=cfg.seed, config=cfg.generator, layout_seed=cfg.product_seed)

    labeled_labels = [c for c, n in _per_class(cfg.labeled_per_class).items() for _ in range(n)]
    labeled = _build(gen, labeled_labels, "labeled", cfg, 0, rng, progress)

    weights = np.array([cfg.unlabeled_class_weights.get(c, 0.0) for c in CLASSES], float)
    if cfg.unlabeled_count and weights.sum() <= 0:
        raise ValueError("unlabeled_class_weights must give at least one class a positive weight")
    pool_labels = (
        list(rng.choice(CLASSES, size=cfg.unlabeled_count, p=weights / weights.sum())) if cfg.unlabeled_count else []
    )
    unlabeled = _build(gen, [str(c) for c in pool_labels], "unlabeled", cfg, 100, rng, progress)
    for rec in unlabeled:
        rec.attrs["true_label"] = rec.label
        rec.label = None
        rec.defect_mask = None

    test_labels = [c for c in CLASSES for _ in range(cfg.test_per_class)]
    test = _build(gen, test_labels, "test", cfg, 200, rng, progress)
    for rec in test:
        rec.split_hint = "test"
    return {"labeled": labeled, "unlabeled": unlabeled, "test": test}
