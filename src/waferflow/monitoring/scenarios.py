"""Production streams for drift tests and demos, from the project's own generator.

``unshifted`` is production as the model knows it: the default WM-811K-like class mix on the
default generator ranges, with another seed: other wafers and lots of the same products (die
layouts of ``base.product_seed``, default ``base.seed``), as one fab's production from week to
week. (Streams of other products as well moved the die-count distribution and, through a small
model's answers, the class mix by more than sampling gives: a new product is a shift of its own,
``wafer_size``.) Each shifted stream changes one thing a fab meets:

* ``background`` — a process excursion: the background fail rate range three times the default's;
* ``class_mix`` — a new defect mix: Edge-Ring, Center and Loc make up most wafers;
* ``wafer_size`` — a new product: wafers 170–220 dies across (the pools: 15–160);
* ``novel_pattern`` — a mechanism no class covers: a reticle-repeat grid of failing rows and
  columns every 3–6 dies (a stepper/reticle defect) on otherwise ordinary wafers.

Streams keep the generator's true class in ``attrs.true_label`` (``None`` for the novel pattern).
"""

from __future__ import annotations

import numpy as np

from waferflow.classes import DIE_FAIL, DIE_NONE
from waferflow.data.records import WaferRecord
from waferflow.synth.dataset import DatasetConfig, generate_dataset

__all__ = ["SCENARIOS", "CLASS_MIX_WEIGHTS", "stream", "mixed_pattern_wafers"]

SCENARIOS = ("unshifted", "background", "class_mix", "wafer_size", "novel_pattern")
CLASS_MIX_WEIGHTS = {"Center": 20, "Edge-Ring": 30, "Loc": 15, "Edge-Loc": 5, "none": 30}  # the class_mix stream


def _reticle_grid(rec: WaferRecord, rng: np.random.Generator) -> WaferRecord:
    grid = rec.die_grid.copy()
    period = int(rng.integers(3, 7))
    oy, ox = rng.integers(0, period, 2)
    yy, xx = np.indices(grid.shape)
    lines = ((yy - oy) % period == 0) | ((xx - ox) % period == 0)
    hit = lines & (grid != DIE_NONE) & (rng.random(grid.shape) < 0.8)
    grid[hit] = DIE_FAIL
    rec.die_grid, rec.defect_mask = grid, None
    rec.attrs["true_label"] = None
    rec.attrs["scenario_pattern"] = f"reticle grid, period {period}"
    return rec


def stream(scenario: str, n: int, seed: int, base: DatasetConfig = DatasetConfig()) -> list[WaferRecord]:
    """``n`` production wafers of ``scenario`` (one of :data:`SCENARIOS`), deterministic per seed."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown drift scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    gen = base.generator
    weights = dict(base.unlabeled_class_weights)
    if scenario == "background":
        lo, hi = gen.background_fail_range
        gen = gen.model_copy(update={"background_fail_range": (3 * lo, min(3 * hi, 0.6))})
    elif scenario == "class_mix":
        weights = dict(CLASS_MIX_WEIGHTS)
    elif scenario == "wafer_size":
        gen = gen.model_copy(update={"diameter_range": (170, 220)})
    cfg = base.model_copy(
        update={
            "seed": seed,
            "labeled_per_class": 0,
            "unlabeled_count": n,
            "test_per_class": 0,
            "unlabeled_class_weights": weights,
            "generator": gen,
            "n_products": max(1, min(base.n_products, n // 5)),
            "product_seed": base.seed if base.product_seed is None else base.product_seed,  # the fab's products
        }
    )
    records = generate_dataset(cfg)["unlabeled"]
    if scenario == "novel_pattern":
        rng = np.random.default_rng([seed, 77])
        records = [_reticle_grid(r, rng) for r in records]
    for r in records:
        r.attrs["scenario"] = scenario
    return records


def mixed_pattern_wafers(n: int, seed: int, base: DatasetConfig = DatasetConfig()) -> list[WaferRecord]:
    """``n`` wafers carrying two patterns at once (Center + Scratch, Edge-Ring + Loc, …: every
    pair the generator can mix), each on its own die layout. No class covers them; each keeps
    its first pattern in ``attrs.true_label`` and both in ``attrs.patterns``."""
    from waferflow.synth.generator import _MIXABLE as MIXABLE, WaferGenerator  # the pairs it mixes

    gen = WaferGenerator(seed, base.generator.model_copy(update={"mixed_probability": 1.0}))
    firsts = [c for c, partners in MIXABLE.items() if partners]
    records = []
    for i in range(n):
        rec = gen.make(firsts[i % len(firsts)], index=i, lot_id=f"MIX-{seed}-{i // 25}", wafer_id=str(i))
        rec.attrs.update(true_label=rec.label, scenario="mixed_pattern")
        rec.label = None
        records.append(rec)
    return records
