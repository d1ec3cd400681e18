import math

import numpy as np
import pytest

from tests.conftest import disc
from waferflow.classes import mask_index
from waferflow.inference.defects import defect_metrics, severity_score


def test_clusters_counts_areas_centroids_exact():
    grid = disc(21, 21)
    mask = np.zeros_like(grid)
    # a 3x3 Loc block centred on (5, 10), a single Loc die at (15, 4), a diagonal scratch of 4 dies
    for r in range(4, 7):
        for c in range(9, 12):
            grid[r, c], mask[r, c] = 2, mask_index("Loc")
    grid[15, 4], mask[15, 4] = 2, mask_index("Loc")
    for k in range(4):
        grid[10 + k, 12 + k], mask[10 + k, 12 + k] = 2, mask_index("Scratch")
    grid[18, 10] = 2  # a background fail outside the mask
    m = defect_metrics(grid, mask, "Loc")
    clusters = {(c["class"], c["dies"]): c for c in m["clusters"]}
    assert sorted(clusters) == [("Loc", 1), ("Loc", 9), ("Scratch", 4)]  # diagonal dies are one cluster (8-connected)
    block = clusters[("Loc", 9)]
    assert block["bbox"] == [4, 9, 6, 11] and block["centroid"] == [5.0, 10.0]
    assert clusters[("Loc", 1)]["centroid"] == [15.0, 4.0] and clusters[("Loc", 1)]["compactness"] == 1.0
    assert (
        clusters[("Scratch", 4)]["centroid"] == [11.5, 13.5]
        and clusters[("Scratch", 4)]["compactness"] < block["compactness"]
    )
    assert m["fail_dies"] == 15 and m["affected_dies"] == 14 and m["dies"] == int((grid > 0).sum())
    assert m["fail_density"] == round(15 / m["dies"], 6)
    assert m["severity"] == round(100 * (1 - math.exp(-5 * 15 / m["dies"])), 1)
    assert sum(m["quadrants"].values()) == pytest.approx(1.0, abs=1e-3)
    # centre of the die area is (10, 10): block cols 9 | 10-11, the lone die lower left, scratch + (18, 10) lower right
    assert m["quadrants"] == {
        "upper_left": 0.2,
        "upper_right": 0.4,
        "lower_left": round(1 / 15, 4),
        "lower_right": round(5 / 15, 4),
    }


def test_edge_ratio_and_empty_cases():
    grid = disc(20, 20)
    rows, cols = np.nonzero(grid)
    edge = [(r, c) for r, c in zip(rows, cols) if np.hypot(r + 0.5 - 10, c + 0.5 - 10) > 9.3][:6]
    for r, c in edge:
        grid[r, c] = 2
    grid[10, 10] = 2
    m = defect_metrics(grid, np.zeros_like(grid), "Edge-Ring")
    assert m["edge_ratio"] == round(6 / 7, 4) and m["clusters"] == [] and m["affected_dies"] == 0
    clean = defect_metrics(disc(20, 20), np.zeros((20, 20), np.uint8), "none")
    assert clean["severity"] == 0.0 and clean["edge_ratio"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        defect_metrics(disc(5, 5), np.zeros((4, 5), np.uint8), "none")


def test_severity_formula_orders_patterns():
    assert severity_score(0.2, "Center") > severity_score(0.2, "Random") > severity_score(0.2, "none")
    assert severity_score(1.0, "Near-full") == 99.3
