"""Query strategies: which unlabeled wafers an engineer should label next.

Every function is plain numpy on what the model produced for the pool, so each strategy is
tested on hand-made probabilities and embeddings:

* ``random`` — the baseline every other strategy must beat;
* ``entropy`` — predictive entropy of the class probabilities (flattest first);
* ``margin`` — smallest gap between the two most probable classes;
* ``bald`` — mutual information between prediction and weights, from MC-dropout passes
  (Houlsby et al. 2011; Gal et al. 2017): H[mean p] - mean H[p];
* ``coreset`` — k-center greedy on embeddings (Sener & Savarese 2018): repeatedly take the pool
  wafer farthest from everything labeled or already taken;
* ``hybrid`` — uncertainty pre-filter (entropy, the ``prefilter`` × budget most uncertain), then
  k-center greedy among those, so a batch is uncertain *and* not ten copies of one pattern.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    >>> select("entropy", 1, probs=probs)[0].tolist()
    [1]
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import pairwise_distances_argmin_min

__all__ = ["STRATEGIES", "entropy", "margin", "bald", "k_center_greedy", "select"]

STRATEGIES = ("random", "entropy", "margin", "bald", "coreset", "hybrid")
_EPS = 1e-12


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy per row (nats); higher = more uncertain."""
    p = np.clip(probs, _EPS, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row; *lower* = more uncertain."""
    top2 = np.sort(probs, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """BALD mutual information from MC-dropout samples ``(T, N, C)``; higher = more informative."""
    if mc_probs.ndim != 3 or mc_probs.shape[0] < 2:
        raise ValueError(f"bald needs (T>=2, N, C) MC samples, got shape {mc_probs.shape}")
    return entropy(mc_probs.mean(axis=0)) - entropy(mc_probs).mean(axis=0)


def k_center_greedy(
    pool: np.ndarray, labeled: np.ndarray | None, budget: int, candidates: np.ndarray | None = None, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center: ``budget`` pool rows, each the farthest (Euclidean) from the labeled set
    and the rows taken before it. Returns the indices and each one's distance when taken.

    ``candidates`` restricts the choice to those pool rows (hybrid); distances are measured
    against all labeled rows. Without labeled rows the first pick is the row farthest from the
    pool's mean.
    """
    idx = np.arange(len(pool)) if candidates is None else np.asarray(candidates)
    pts = pool[idx].astype(np.float32)
    budget = min(budget, len(idx))
    if labeled is not None and len(labeled):
        dist = np.concatenate(
            [
                pairwise_distances_argmin_min(pts[i : i + chunk], labeled.astype(np.float32))[1]
                for i in range(0, len(pts), chunk)
            ]
        )
    else:
        dist = np.linalg.norm(pts - pts.mean(axis=0), axis=1)
    chosen, at = [], []
    for _ in range(budget):
        j = int(np.argmax(dist))
        chosen.append(j)
        at.append(float(dist[j]))
        dist = np.minimum(dist, np.linalg.norm(pts - pts[j], axis=1))
        dist[j] = -np.inf
    return idx[np.array(chosen, dtype=int)], np.array(at)


def _top(scores: np.ndarray, budget: int, highest: bool = True) -> np.ndarray:
    order = np.argsort(-scores if highest else scores, kind="stable")
    return order[:budget]


def select(
    strategy: str,
    budget: int,
    probs: np.ndarray | None = None,
    mc_probs: np.ndarray | None = None,
    pool_emb: np.ndarray | None = None,
    labeled_emb: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    prefilter: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``budget`` pool rows to label (in query order) and the strategy's score for
    each (entropy/BALD: higher is more uncertain; margin: lower; coreset: distance when taken)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown al.strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    n = len(probs) if probs is not None else len(pool_emb)
    budget = min(int(budget), n)
    if strategy == "random":
        rng = rng or np.random.default_rng(0)
        picked = rng.choice(n, size=budget, replace=False)
        return picked, np.zeros(budget)
    if strategy == "entropy":
        s = entropy(probs)
        picked = _top(s, budget)
        return picked, s[picked]
    if strategy == "margin":
        s = margin(probs)
        picked = _top(s, budget, highest=False)
        return picked, s[picked]
    if strategy == "bald":
        s = bald(mc_probs)
        picked = _top(s, budget)
        return picked, s[picked]
    if strategy == "coreset":
        return k_center_greedy(pool_emb, labeled_emb, budget)
    # hybrid: the most uncertain prefilter x budget rows, then diversity among them
    shortlist = _top(entropy(probs), min(n, max(budget, int(round(prefilter * budget)))))
    return k_center_greedy(pool_emb, labeled_emb, budget, candidates=shortlist)
