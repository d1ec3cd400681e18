"""Wafer-level features: one function for training data, production traffic and drift checks.

Computed on the die grid as it arrives (any size, non-square included — not the resized model
input), so a new wafer size shows up as a change in ``n_dies``:

* ``n_dies`` — dies on the wafer (code 1 or 2); ``fail_ratio`` — failing share of them;
* ``ring_1`` … ``ring_5`` — fail ratio in 5 concentric rings (radius from the wafer's centroid,
  normalised by the farthest die: ring 1 is the centre, ring 5 the edge);
* ``quad_ne``, ``quad_nw``, ``quad_sw``, ``quad_se`` — fail ratio per quadrant around the centroid;
* ``edge_ratio`` — share of the failing dies that lie in the outer 20 % of the radius;
* ``n_clusters``, ``max_cluster_share``, ``mean_cluster_size`` — connected groups (8-neighbour)
  of at least ``MIN_CLUSTER`` failing dies: how many, the largest as a share of the wafer's dies,
  and their mean size in dies.

Example:
    >>> import numpy as np
    >>> f = wafer_features(np.array([[0, 1, 1, 0], [1, 2, 2, 1], [1, 2, 1, 1], [0, 1, 1, 0]]))
    >>> f["n_dies"], round(f["fail_ratio"], 3), f["n_clusters"]
    (12, 0.25, 1)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from waferflow.classes import DIE_FAIL, DIE_NONE

__all__ = ["FEATURES", "RINGS", "MIN_CLUSTER", "wafer_features", "feature_frame", "fail_ratio", "ring_profile"]

RINGS = 5
MIN_CLUSTER = 3
FEATURES = (
    "n_dies",
    "fail_ratio",
    *(f"ring_{k + 1}" for k in range(RINGS)),
    "quad_ne",
    "quad_nw",
    "quad_sw",
    "quad_se",
    "edge_ratio",
    "n_clusters",
    "max_cluster_share",
    "mean_cluster_size",
)
_EIGHT = np.ones((3, 3), bool)


def _radius(wafer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised radius of every cell from the wafer's centroid, and the offsets (dy, dx)."""
    yy, xx = np.indices(wafer.shape)
    dy, dx = yy - yy[wafer].mean(), xx - xx[wafer].mean()
    r = np.hypot(dy, dx)
    return r / max(float(r[wafer].max()), 1e-9), dy, dx


def _share(fail: np.ndarray, sel: np.ndarray) -> float:
    return float(fail[sel].mean()) if sel.any() else 0.0


def wafer_features(grid: np.ndarray) -> dict[str, float]:
    """The :data:`FEATURES` of one die grid (2-D, codes 0/1/2)."""
    grid = np.asarray(grid)
    wafer, fail = grid != DIE_NONE, grid == DIE_FAIL
    out = dict.fromkeys(FEATURES, 0.0)
    n = int(wafer.sum())
    out["n_dies"] = n
    if n == 0:
        return out
    out["fail_ratio"] = float(fail.sum() / n)
    r, dy, dx = _radius(wafer)
    ring = np.minimum((r * RINGS).astype(int), RINGS - 1)
    for k in range(RINGS):
        out[f"ring_{k + 1}"] = _share(fail, wafer & (ring == k))
    for name, sel in (
        ("quad_ne", (dy < 0) & (dx >= 0)),
        ("quad_nw", (dy < 0) & (dx < 0)),
        ("quad_sw", (dy >= 0) & (dx < 0)),
        ("quad_se", (dy >= 0) & (dx >= 0)),
    ):
        out[name] = _share(fail, wafer & sel)
    n_fail = int(fail.sum())
    out["edge_ratio"] = float((fail & (r >= 0.8)).sum() / n_fail) if n_fail else 0.0
    labels, _ = ndimage.label(fail, structure=_EIGHT)
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes >= MIN_CLUSTER]
    out["n_clusters"] = int(len(sizes))
    out["max_cluster_share"] = float(sizes.max() / n) if len(sizes) else 0.0
    out["mean_cluster_size"] = float(sizes.mean()) if len(sizes) else 0.0
    return out


def feature_frame(grids):
    """One row of :data:`FEATURES` per grid (an iterable of 2-D grids of any sizes), as a DataFrame."""
    import pandas as pd

    return pd.DataFrame([wafer_features(g) for g in grids], columns=list(FEATURES))


def fail_ratio(grids: np.ndarray) -> np.ndarray:
    """Failing share of the dies of each grid in a (N, H, W) stack."""
    dies = (grids != DIE_NONE).sum(axis=(1, 2))
    return (grids == DIE_FAIL).sum(axis=(1, 2)) / np.maximum(dies, 1)


def ring_profile(grids: np.ndarray, rings: int = RINGS) -> np.ndarray:
    """(N, rings) fail ratio per concentric ring of each wafer (radius from the wafer's centroid)."""
    grids = np.asarray(grids)
    if grids.ndim == 2:
        grids = grids[None]
    out = np.zeros((len(grids), rings))
    for i, g in enumerate(grids):
        wafer, fail = g != DIE_NONE, g == DIE_FAIL
        if not wafer.any():
            continue
        ring = np.minimum((_radius(wafer)[0] * rings).astype(int), rings - 1)
        out[i] = [_share(fail, wafer & (ring == k)) for k in range(rings)]
    return out
