"""Pattern features of a wafer map: where and how its fails lie, on the wafer's own grid.

WM-811K's own paper (Wu et al., "Wafer Map Failure Pattern Recognition and Similarity Ranking
for Large-Scale Data Sets", IEEE TSM 2015) classifies on density, Radon and geometry features.
They describe a pattern by its place and shape, not by pixel texture, so a generator's texture
mismatch matters less to them: trained on generated maps only they transfer to real maps better
than the U-Net (``benchmarks/feature_classifier.py``). The 113 features (:data:`FEATURE_NAMES`):

* the monitor's 15 wafer features (:mod:`waferflow.data.features`, ``n_dies`` as its log);
* fail density in 13 regions (centre disc, 4 sectors of a middle ring, 8 of the rim band);
* Radon projections of the median-filtered fail map (isolated background fails removed), the
  mean and standard deviation over 36 angles, each resampled to 20 points;
* the largest filtered cluster's geometry: share of the dies, centroid radius, inner and outer
  radius, eccentricity, solidity, share of it in the outermost 10 % of the radius;
* the raw map's clusters (thin scratches do not survive the filter): the largest one's share,
  length over the wafer's diameter and elongation, the second's share, how many hold >= 5 dies;
* rim coverage: the share of 16 rim sectors failing well above the inside, the densest sector
  and the mean of the 4 densest;
* hotspots, at two scales (Gaussian sigma = the wafer's diameter / 10 and / 5): where the
  smoothed fail density peaks, how far above the wafer's median density (difference and ratio),
  and the hot area (above half-way from median to peak): its share, radii and share at the rim.
  A faint Loc or Center under a heavy background forms no connected cluster but still a peak;
* the radial profile relative to the wafer's own fail rate: 6 rings, difference and ratio
  (real backgrounds are several times heavier than generated ones; the contrast transfers);
* lines: the raw fail map's fails on every straight line across the wafer (counted
  projections at 60 angles) against the wafer's own chords (the fails a line would hold by
  chance), the strongest excess as a z-score and per diameter, and how sharp it is across the
  line (a scratch is thin, a blob is wide). The median filter of the Radon features erases a
  one-die scratch; these see it.

Every caller has the model's input (grids resized to ``preprocess.image_size``) and each
wafer's original shape; :func:`grid_features` resizes back to that shape first, which restores a
grid of up to the input size exactly (nearest-neighbour), so training, evaluation, the gate and
the served engine see the same features for the same wafer.

Example:
    >>> import numpy as np
    >>> yy, xx = np.indices((40, 40))
    >>> grid = np.where(np.hypot(yy - 19.5, xx - 19.5) < 19, 1, 0).astype(np.uint8)
    >>> grid[(np.hypot(yy - 19.5, xx - 19.5) < 19) & (np.hypot(yy - 19.5, xx - 19.5) > 16)] = 2
    >>> f = dict(zip(FEATURE_NAMES, pattern_features(grid)))
    >>> float(f["rim_sectors_failing"]), float(f["density_centre"])
    (1.0, 0.0)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from scipy import ndimage
from skimage.measure import label as label_regions
from skimage.measure import regionprops
from skimage.transform import radon
from tqdm.auto import tqdm

from waferflow.classes import DIE_FAIL, DIE_NONE
from waferflow.data.features import FEATURES, wafer_features
from waferflow.data.resize import resize_grid

__all__ = ["FEATURE_NAMES", "RADON_POINTS", "feature_workers", "grid_features", "original_shapes", "pattern_features"]

RADON_POINTS = 20
RADON_ANGLES = np.arange(0, 180, 5)
FEATURE_NAMES: tuple[str, ...] = (
    *FEATURES,
    "density_centre",
    *(f"density_middle_{q}" for q in range(4)),
    *(f"density_rim_{s}" for s in range(8)),
    *(f"radon_mean_{i}" for i in range(RADON_POINTS)),
    *(f"radon_std_{i}" for i in range(RADON_POINTS)),
    "cluster_share",
    "cluster_radius",
    "cluster_inner_radius",
    "cluster_outer_radius",
    "cluster_eccentricity",
    "cluster_solidity",
    "cluster_rim_share",
    "raw_cluster_share",
    "raw_cluster_length",
    "raw_cluster_elongation",
    "raw_second_cluster_share",
    "raw_clusters",
    "rim_sectors_failing",
    "rim_densest_sector",
    "rim_densest_4",
    *(
        f"hotspot_{scale}_{name}"
        for scale in ("fine", "coarse")
        for name in ("excess", "ratio", "radius", "area", "rim_share", "mean_radius", "inner_radius")
    ),
    *(f"profile_excess_{k}" for k in range(6)),
    *(f"profile_ratio_{k}" for k in range(6)),
    "line_z",
    "line_excess",
    "line_sharpness",
    "line_sharp_z",
)
HOTSPOT_SCALES = {"fine": 10, "coarse": 5}  # Gaussian sigma = the wafer's diameter / this
PROFILE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.75, 0.88, np.inf)  # radius rings of the relative profile
LINE_ANGLES = np.arange(0, 180, 3)
LINE_WIDTH = 3  # a line's excess is compared with the projections this many bins to each side


def _polar(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's radius (0 centre .. 1 rim of the wafer) and angle."""
    ys, xs = np.nonzero(grid != DIE_NONE)
    cy, cx = ys.mean(), xs.mean()
    ry, rx = max(np.ptp(ys) / 2, 1), max(np.ptp(xs) / 2, 1)
    yy, xx = np.indices(grid.shape)
    u, v = (yy - cy) / (ry + 0.5), (xx - cx) / (rx + 0.5)
    return np.hypot(u, v), np.arctan2(u, v)


def _resampled(values: np.ndarray, points: int = RADON_POINTS) -> np.ndarray:
    return np.interp(np.linspace(0, len(values) - 1, points), np.arange(len(values)), values)


def _share(fail: np.ndarray, region: np.ndarray) -> float:
    return float(fail[region].mean()) if region.any() else 0.0


def _hotspot(fail: np.ndarray, wafer: np.ndarray, r: np.ndarray, sigma: float) -> list[float]:
    """Where the fail density, smoothed over the wafer alone, peaks and how much stands out."""
    num = ndimage.gaussian_filter(fail.astype(float), sigma, mode="constant")
    den = ndimage.gaussian_filter(wafer.astype(float), sigma, mode="constant")
    density = np.where(wafer, num / np.maximum(den, 1e-6), -1.0)
    median = float(np.median(density[wafer]))
    peak_at = int(np.argmax(density))
    peak = float(density.flat[peak_at])
    hot = (density > median + 0.5 * (peak - median)) & wafer if peak > median else np.zeros_like(wafer)
    hot_r = r[hot] if hot.any() else np.zeros(1)  # no hot area: radii and rim share 0
    return [
        peak - median,
        (peak - median) / (median + 0.02),
        float(r.flat[peak_at]),
        float(hot.sum() / wafer.sum()),
        float((hot_r >= 0.85).mean()),
        float(hot_r.mean()),
        float(hot_r.min()),
    ]


def _projections(fail: np.ndarray, wafer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fails and dies on each straight line across the wafer: for every angle of
    :data:`LINE_ANGLES`, the cells binned by their distance along the angle's normal (one die
    wide). Shape (distance bins, angles), as ``skimage.transform.radon`` lays a sinogram out, but
    counted (no interpolation: a line of dies falls in one bin), ~5x faster."""
    ys, xs = np.nonzero(wafer)
    theta = np.deg2rad(LINE_ANGLES)
    dist = np.rint(np.outer(np.cos(theta), xs - xs.mean()) + np.outer(np.sin(theta), ys - ys.mean())).astype(int)
    dist -= dist.min()
    bins = int(dist.max()) + 1
    flat = (dist + bins * np.arange(len(theta))[:, None]).ravel()
    size = bins * len(theta)
    chords = np.bincount(flat, minlength=size).reshape(len(theta), bins).T
    fails = np.bincount(flat, weights=np.tile(fail[ys, xs], len(theta)), minlength=size).reshape(len(theta), bins).T
    return fails, chords.astype(float)


def _lines(fail: np.ndarray, wafer: np.ndarray, rate: float, diameter: float) -> list[float]:
    """The strongest straight run of fails beyond what the wafer's chords hold by chance."""
    fails, chords = _projections(fail, wafer)
    excess = fails - rate * chords
    z = excess / np.sqrt(rate * (1 - rate) * chords + 1.0)
    padded = np.pad(excess, ((LINE_WIDTH, LINE_WIDTH), (0, 0)), mode="edge")
    sharpness = excess - 0.5 * (padded[: -2 * LINE_WIDTH] + padded[2 * LINE_WIDTH :])
    sharpest = np.unravel_index(np.argmax(sharpness), sharpness.shape)
    return [float(z.max()), float(excess.max()) / diameter, float(sharpness.max()) / diameter, float(z[sharpest])]


def pattern_features(grid: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_NAMES` of one die grid (codes 0/1/2, at least one die), float64."""
    wafer, fail = grid != DIE_NONE, grid == DIE_FAIL
    n_dies = max(int(wafer.sum()), 1)
    r, a = _polar(grid)
    sector = ((a + np.pi) / (2 * np.pi) * 8).astype(int) % 8
    regions = [r < 0.35] + [(r >= 0.35) & (r < 0.75) & (sector // 2 == q) for q in range(4)]
    regions += [(r >= 0.75) & (sector == s) for s in range(8)]
    density = [_share(fail, m & wafer) for m in regions]

    filtered = ndimage.median_filter(fail.astype(np.uint8), size=3).astype(bool) & wafer
    if filtered.any():
        sino = radon(filtered.astype(float), theta=RADON_ANGLES, circle=False)
        rad = np.concatenate([_resampled(sino.mean(axis=1)), _resampled(sino.std(axis=1))]) / np.sqrt(n_dies)
    else:
        rad = np.zeros(2 * RADON_POINTS)

    labels = label_regions(filtered, connectivity=2)
    geometry = [0.0] * 7
    if labels.max():
        biggest = max(regionprops(labels), key=lambda p: p.area)
        cr = r[labels == biggest.label]
        geometry = [
            biggest.area / n_dies,
            float(r[tuple(np.round(biggest.centroid).astype(int))]),
            float(cr.min()),
            float(cr.max()),
            float(biggest.eccentricity),
            float(biggest.solidity),
            float((cr >= 0.9).mean()),
        ]
    raw = label_regions(fail, connectivity=2)
    props = sorted(regionprops(raw), key=lambda p: -p.area) if raw.max() else []
    diameter = max(np.sqrt(n_dies * 4 / np.pi), 1.0)
    lines = [0.0] * 5
    if props:
        top = props[0]
        lines = [
            top.area / n_dies,
            top.axis_major_length / diameter,
            top.axis_major_length / max(top.axis_minor_length, 1.0),
            props[1].area / n_dies if len(props) > 1 else 0.0,
            float(sum(p.area >= 5 for p in props)) / np.sqrt(n_dies),
        ]
    # how much of the rim fails: a ring closes, an edge cluster covers a few sectors
    rim = (r >= 0.8) & wafer
    sectors = ((a + np.pi) / (2 * np.pi) * 16).astype(int) % 16
    rim_density = np.array([_share(fail, rim & (sectors == k)) for k in range(16)])
    inner = _share(fail, (r < 0.8) & wafer)
    coverage = [
        float((rim_density > max(2 * inner, 0.15)).mean()),
        float(rim_density.max()),
        float(np.sort(rim_density)[-4:].mean()),
    ]
    monitor = wafer_features(grid)
    rate = monitor["fail_ratio"]
    hotspots = [v for div in HOTSPOT_SCALES.values() for v in _hotspot(fail, wafer, r, max(diameter / div, 1.0))]
    profile = [_share(fail, wafer & (r >= lo) & (r < hi)) for lo, hi in zip(PROFILE_EDGES[:-1], PROFILE_EDGES[1:])]
    relative = [p - rate for p in profile] + [p / (rate + 0.02) for p in profile]
    base = list(monitor.values())
    base[0] = np.log1p(base[0])  # die count: a size, compared as log
    out = np.asarray(
        base
        + density
        + list(rad)
        + geometry
        + lines
        + coverage
        + hotspots
        + relative
        + _lines(fail, wafer, rate, diameter),
        dtype=np.float64,
    )
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def original_shapes(frame, grids: np.ndarray) -> list[tuple[int, int]]:
    """Each wafer's shape before the split stage resized it (``attrs.orig_shape`` of a processed
    frame); the grid's own shape where a row does not say (or without a frame)."""
    import json

    size = tuple(grids.shape[1:])
    if frame is None or "attrs" not in frame:
        return [size] * len(grids)
    shapes = []
    for attrs in frame["attrs"]:
        shape = json.loads(attrs).get("orig_shape") if isinstance(attrs, str) else None
        shapes.append(tuple(int(s) for s in shape) if shape else size)
    return shapes


PARALLEL_CHUNK = 500  # wafers a worker process takes at a time (fewer than two chunks: one process)


def feature_workers(n_jobs: int) -> int:
    """Worker processes for ``n_jobs``: itself when positive, every core this process may use
    when ``-1`` (``-2``: all but one, as joblib counts).

    >>> feature_workers(3)
    3
    >>> feature_workers(-1) >= 1
    True
    """
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive count or negative (-1: every core), not 0")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def _features_block(grids: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]]) -> np.ndarray:
    restored = (resize_grid(g, s) if tuple(np.shape(g)) != tuple(s) else np.asarray(g) for g, s in zip(grids, shapes))
    return np.stack([pattern_features(g) for g in restored])


def grid_features(
    grids: Sequence[np.ndarray] | np.ndarray,
    shapes: Sequence[tuple[int, int]] | None = None,
    progress: bool = False,
    desc: str = "pattern features",
    n_jobs: int = 1,
    chunk: int = PARALLEL_CHUNK,
) -> np.ndarray:
    """``(N, 113)`` features of model-input grids, each first resized back to its original shape
    (``shapes``; None: as given). ``n_jobs`` worker processes (-1: every core) take ``chunk``
    wafers at a time when there are at least two chunks' worth; the rows come back in order and
    are the same as one process computes."""
    workers = feature_workers(n_jobs)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 wafer, not {chunk}")
    shapes = list(shapes) if shapes is not None else [np.shape(g) for g in grids]
    if len(shapes) != len(grids):
        raise ValueError(f"{len(grids)} grids but {len(shapes)} shapes")
    if not shapes:
        return np.zeros((0, len(FEATURE_NAMES)))
    workers = min(workers, -(-len(shapes) // chunk))
    if workers == 1 or len(shapes) < 2 * chunk:
        workers, chunk = 1, len(shapes)
    starts = range(0, len(shapes), chunk)
    bar = tqdm(total=len(shapes), desc=desc, unit="wafer", disable=not progress, mininterval=5)
    blocks = []
    with bar:
        if workers == 1:
            for g, s in zip(grids, shapes):
                blocks.append(_features_block([g], [s]))
                bar.update()
        else:
            jobs = (delayed(_features_block)(grids[i : i + chunk], shapes[i : i + chunk]) for i in starts)
            for block in Parallel(n_jobs=workers, return_as="generator")(jobs):
                blocks.append(block)
                bar.update(len(block))
    return np.concatenate(blocks)
