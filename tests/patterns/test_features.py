"""Pattern features: defined on any grid, restored exactly from the model input, and they tell
the patterns apart by where the fails lie."""

import numpy as np
import pytest

from tests.conftest import disc
from waferflow.data.resize import resize_grid
from waferflow.patterns.config import PatternsConfig
from waferflow.patterns.features import FEATURE_NAMES, grid_features, original_shapes, pattern_features


def _wafer(n: int = 41) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((n, n))
    r = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) / (n / 2)
    return np.where(r < 1, 1, 0).astype(np.uint8), r


def _named(grid: np.ndarray) -> dict:
    return dict(zip(FEATURE_NAMES, pattern_features(grid)))


@pytest.mark.parametrize(
    "grid",
    [np.array([[1]], np.uint8), np.array([[2]], np.uint8), np.full((5, 7), 2, np.uint8), disc(30, 30)],
    ids=["one die", "one failing die", "all fail", "no fail"],
)
def test_every_feature_is_finite_on_degenerate_wafers(grid):
    f = pattern_features(grid)
    assert f.shape == (len(FEATURE_NAMES),) and np.isfinite(f).all()


def test_a_ring_a_centre_blob_and_a_scratch_differ_where_an_engineer_looks():
    base, r = _wafer()
    ring, centre, scratch = base.copy(), base.copy(), base.copy()
    ring[(r > 0.85) & (r < 1)] = 2
    centre[r < 0.25] = 2
    idx = np.arange(8, 33)
    scratch[idx, idx] = 2  # a thin diagonal line
    f_ring, f_centre, f_scratch = _named(ring), _named(centre), _named(scratch)
    assert f_ring["rim_sectors_failing"] == 1.0 and f_centre["rim_sectors_failing"] == 0.0
    assert f_centre["density_centre"] > 0.5 > f_ring["density_centre"] + 0.4
    assert f_scratch["raw_cluster_elongation"] > 5 * max(f_centre["raw_cluster_elongation"], 1.0)
    assert f_scratch["raw_cluster_length"] > 0.5 > f_centre["raw_cluster_length"]


def test_features_of_the_model_input_at_the_original_shape_equal_the_originals():
    rng = np.random.default_rng(3)
    grids = []
    for shape in [(37, 41), (20, 20), (64, 50)]:
        g = disc(*shape)
        g[(g == 1) & (rng.random(shape) < 0.1)] = 2
        grids.append(g)
    small = np.stack([resize_grid(g, (64, 64)) for g in grids])
    got = grid_features(small, [g.shape for g in grids])
    assert np.array_equal(got, np.stack([pattern_features(g) for g in grids]))
    # without the original shapes, the features are of the resized grid: not the same wafer size
    assert not np.array_equal(grid_features(small), got)


def test_original_shapes_come_from_the_split_stage_attrs():
    import pandas as pd

    frame = pd.DataFrame({"attrs": ['{"orig_shape": [30, 41]}', "{}", None]})
    assert original_shapes(frame, np.zeros((3, 32, 32))) == [(30, 41), (32, 32), (32, 32)]
    assert original_shapes(None, np.zeros((2, 16, 8))) == [(16, 8), (16, 8)]
    with pytest.raises(ValueError, match="3 grids but 2 shapes"):
        grid_features(np.zeros((3, 8, 8), np.uint8) + 1, [(8, 8), (8, 8)])


def test_features_computed_in_worker_processes_are_the_same_rows_in_the_same_order():
    rng = np.random.default_rng(5)
    grids, shapes = [], []
    for i in range(23):
        shape = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
        g = disc(*shape)
        g[(g == 1) & (rng.random(shape) < rng.uniform(0.01, 0.3))] = 2
        grids.append(resize_grid(g, (64, 64)))
        shapes.append(shape)
    one = grid_features(grids, shapes)
    # 5 chunks of 5 (the last of 3) over 2 processes: any mix-up of chunks would reorder rows
    assert np.array_equal(grid_features(grids, shapes, n_jobs=2, chunk=5), one)
    assert np.array_equal(grid_features(np.stack(grids), shapes, n_jobs=-1, chunk=5), one)
    assert len({row.tobytes() for row in one}) == len(one)  # distinct wafers, so order is tested
    assert grid_features([], [], n_jobs=2).shape == (0, len(FEATURE_NAMES))
    with pytest.raises(ValueError, match="not 0"):
        grid_features([], [], n_jobs=0)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        grid_features(grids, shapes, n_jobs=2, chunk=0)
    with pytest.raises(ValueError, match="feature_jobs must be a count"):
        PatternsConfig(feature_jobs=0)


def _noisy(rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    base, r = _wafer()
    rng = np.random.default_rng(seed)
    base[(base == 1) & (rng.random(base.shape) < rate)] = 2
    return base, r, rng


def test_a_one_die_scratch_under_heavy_background_stands_out_as_a_sharp_line():
    noise, _, _ = _noisy(0.1, seed=0)
    scratch, blob = noise.copy(), noise.copy()
    idx = np.arange(8, 33)
    scratch[idx, idx] = 2  # merges with the background's clusters: the raw cluster features lose it
    yy, xx = np.indices(noise.shape)
    blob[(noise == 1) & (np.hypot(yy - 20, xx - 30) < 4)] = 2  # as many fails, but a blob
    f_noise, f_scratch, f_blob = _named(noise), _named(scratch), _named(blob)
    assert f_scratch["line_z"] > 2 * f_noise["line_z"]  # a blob's fails are in excess too ...
    assert f_scratch["line_sharpness"] > 2 * max(f_noise["line_sharpness"], f_blob["line_sharpness"])  # ... but wide


def test_a_faint_cluster_under_heavy_background_is_found_where_it_lies():
    noise, r, rng = _noisy(0.12, seed=0)
    loc = noise.copy()
    yy, xx = np.indices(noise.shape)
    loc[(noise == 1) & (np.hypot(yy - 20, xx - 30) < 6) & (rng.random(noise.shape) < 0.5)] = 2
    f_noise, f_loc = _named(noise), _named(loc)
    assert f_loc["hotspot_fine_excess"] > 2 * f_noise["hotspot_fine_excess"]
    assert abs(f_loc["hotspot_fine_radius"] - r[20, 30]) < 0.15  # the cluster's centre: half-way out


def test_the_radial_profile_is_relative_to_the_wafers_own_fail_rate():
    noise, r, rng = _noisy(0.12, seed=0)
    centre = noise.copy()
    centre[(noise == 1) & (r < 0.3) & (rng.random(noise.shape) < 0.5)] = 2
    f_centre = _named(centre)
    assert f_centre["profile_excess_0"] > 0.2 > f_centre["profile_excess_5"]
    assert f_centre["profile_ratio_0"] > 2 * f_centre["profile_ratio_5"]
