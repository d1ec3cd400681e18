"""Quality gate for generated die grids, and distances between real and synthetic maps.

Every generated map passes or is dropped with its reason counted:

* ``outline`` — the wafer area (dies with code 1 or 2) is *repaired* first (largest connected
  piece kept, enclosed no-die holes become pass dies) and then must look like the real maps of
  the training split: area share of the grid, solidity (area / convex area) and eccentricity
  inside the real maps' 1st–99th percentile range (the ranges are measured, not guessed, so
  non-square and flat-edged wafers stay in);
* ``fidelity`` — a classifier trained on real training data only gives the intended class a
  probability of at least ``min_confidence``;
* ``novelty`` — not a near copy of a training map of its class: the nearest training map by
  Hamming distance (share of differing grid cells) is farther than ``min_novelty``.

Distances (per class, real vs kept synthetic): Wasserstein distance of the fail-ratio
distributions, mean Wasserstein distance over 5 radial rings of per-ring fail ratios, and a
Fréchet distance between Gaussian fits of classifier embeddings (FID-style).

Example:
    >>> import numpy as np
    >>> ring_profile(np.array([[1, 2], [2, 1]]), rings=1).tolist()
    [[0.5]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, ndimage
from scipy.stats import wasserstein_distance
from skimage.measure import regionprops

from waferflow.classes import DIE_NONE, DIE_PASS
from waferflow.data.features import fail_ratio, ring_profile

__all__ = [
    "OutlineStats",
    "repair_outline",
    "outline_features",
    "nearest_hamming",
    "ring_profile",
    "fail_ratio",
    "frechet_distance",
    "distribution_distances",
]


def repair_outline(grid: np.ndarray) -> np.ndarray:
    """Keep the largest connected wafer piece; enclosed no-die holes become pass dies."""
    wafer = grid != DIE_NONE
    labels, n = ndimage.label(wafer)
    if n == 0:
        return grid.copy()
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    filled = ndimage.binary_fill_holes(largest)
    out = np.where(filled, grid, DIE_NONE).astype(np.uint8)
    out[filled & (out == DIE_NONE)] = DIE_PASS
    return out


def outline_features(grids: np.ndarray) -> np.ndarray:
    """(N, 3) area share, solidity, eccentricity of each grid's wafer area (zeros when empty)."""
    feats = np.zeros((len(grids), 3))
    for i, g in enumerate(grids):
        wafer = (g != DIE_NONE).astype(np.uint8)
        if wafer.any():
            p = regionprops(wafer)[0]
            feats[i] = (p.area / wafer.size, p.solidity, p.eccentricity)
    return feats


@dataclass(frozen=True)
class OutlineStats:
    """The real maps' 1st-99th percentile range of each outline feature."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_real(cls, grids: np.ndarray, margin: float = 0.02) -> "OutlineStats":
        f = outline_features(grids)
        return cls(np.percentile(f, 1, axis=0) - margin, np.percentile(f, 99, axis=0) + margin)

    def check(self, grids: np.ndarray) -> list[str | None]:
        """None for a plausible outline, else the reason."""
        names = ("area share", "solidity", "eccentricity")
        out = []
        for f in outline_features(grids):
            bad = [
                f"{n} {v:.2f} outside real [{lo:.2f}, {hi:.2f}]"
                for n, v, lo, hi in zip(names, f, self.low, self.high)
                if not lo <= v <= hi
            ]
            out.append("; ".join(bad) or None)
        return out


def nearest_hamming(candidates: np.ndarray, references: np.ndarray, chunk: int = 256) -> np.ndarray:
    """For each candidate grid, the smallest share of differing cells to any reference grid."""
    if len(references) == 0:
        return np.ones(len(candidates))
    ref = references.reshape(len(references), -1)
    out = []
    for start in range(0, len(candidates), chunk):
        c = candidates[start : start + chunk].reshape(-1, 1, ref.shape[1])
        out.append((c != ref[None]).mean(axis=2).min(axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fréchet distance between Gaussian fits of two embedding sets (FID-style); None if too few."""
    if len(a) < 2 or len(b) < 2:
        return None
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def distribution_distances(
    real: np.ndarray, synth: np.ndarray, real_emb: np.ndarray | None = None, synth_emb: np.ndarray | None = None
) -> dict:
    """Real vs synthetic grids of one class: fail-ratio and radial-profile Wasserstein distances,
    and the Fréchet distance of classifier embeddings."""
    if len(synth) == 0 or len(real) == 0:
        return {"fail_ratio_wasserstein": None, "radial_profile_wasserstein": None, "embedding_frechet": None}
    rp, sp = ring_profile(real), ring_profile(synth)
    return {
        "fail_ratio_wasserstein": round(float(wasserstein_distance(fail_ratio(real), fail_ratio(synth))), 5),
        "radial_profile_wasserstein": round(
            float(np.mean([wasserstein_distance(rp[:, k], sp[:, k]) for k in range(rp.shape[1])])), 5
        ),
        "embedding_frechet": (
            None if real_emb is None or synth_emb is None else round(frechet_distance(real_emb, synth_emb), 4)
        ),
    }
