"""Is an explanation faithful? The deletion check: remove the fail dies a map ranks highest and
the predicted class should lose more probability than when as many random fail dies are removed
(the deletion metric of Petsiuk et al., "RISE", BMVC 2018, at one budget, against a random baseline).

A deleted fail die becomes a passing die (the wafer keeps its shape). Wafers with fewer than
``min_fails`` fail dies are left out: there is nothing to rank.

Example:
    >>> import numpy as np
    >>> class LeftHalfCenter:  # 'Center' probability grows with the fails in the left half
    ...     def predict(self, grids):
    ...         left = (np.asarray(grids)[:, :, :8] == 2).sum(axis=(1, 2))
    ...         p = np.zeros((len(grids), 9)); p[:, 0] = left / (left + 4.0); p[:, 8] = 1 - p[:, 0]
    ...         return p, None
    >>> grid = np.ones((16, 16), np.uint8); grid[4:12, 2:14] = 2
    >>> attribution = np.zeros((16, 16)); attribution[:, :8] = 1
    >>> result = deletion_check(LeftHalfCenter(), [grid], [attribution], input_size=(16, 16), classes=[0])
    >>> result["mean_drop_top"] > result["mean_drop_random"]
    True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from waferflow.classes import DIE_FAIL, DIE_PASS
from waferflow.data.resize import resize_grid

__all__ = ["deletion_check"]


def deletion_check(
    predictor,
    grids: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    input_size: tuple[int, int],
    fraction: float = 0.2,
    min_fails: int = 5,
    classes: Sequence[int] | None = None,
    seed: int = 0,
) -> dict:
    """Delete the top ``fraction`` of each wafer's fail dies by ``maps`` (same shape as its grid),
    and as many random ones; the drop of the explained class's probability (``classes``, default
    the predicted one) for both. ``predictor.predict(grids at input_size) -> (probs, ...)``."""
    rng = np.random.default_rng(seed)
    kept, top, rand = [], [], []
    for i, (grid, attribution) in enumerate(zip(grids, maps)):
        grid = np.asarray(grid)
        fails = np.flatnonzero(grid == DIE_FAIL)
        if len(fails) < min_fails:
            continue
        k = max(1, int(round(fraction * len(fails))))
        ranked = fails[np.argsort(-np.asarray(attribution).ravel()[fails], kind="stable")]
        for picked, out in ((ranked[:k], top), (rng.choice(fails, k, replace=False), rand)):
            deleted = grid.copy()
            deleted.ravel()[picked] = DIE_PASS
            out.append(deleted)
        kept.append(i)
    if not kept:
        return {"wafers": 0, "fraction": fraction}

    def probs(batch: list[np.ndarray]) -> np.ndarray:
        return np.asarray(predictor.predict(np.stack([resize_grid(g, input_size) for g in batch]))[0])

    before = probs([np.asarray(grids[i]) for i in kept])
    wanted = before.argmax(1) if classes is None else np.asarray([classes[i] for i in kept])
    rows = np.arange(len(kept))
    drop_top = before[rows, wanted] - probs(top)[rows, wanted]
    drop_random = before[rows, wanted] - probs(rand)[rows, wanted]
    return {
        "wafers": len(kept),
        "fraction": fraction,
        "mean_drop_top": round(float(drop_top.mean()), 4),
        "mean_drop_random": round(float(drop_random.mean()), 4),
        "top_beats_random": round(float((drop_top > drop_random).mean()), 4),
        "drop_top": drop_top,
        "drop_random": drop_random,
        "wafer_index": np.asarray(kept),
    }
