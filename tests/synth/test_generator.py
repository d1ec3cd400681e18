import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.morphology import convex_hull_image

from waferflow.classes import CLASSES, DIE_FAIL, DIE_NONE, NONE_CLASS, mask_index
from waferflow.synth import DatasetConfig, GeneratorConfig, WaferGenerator, generate_dataset
from waferflow.synth.generator import WaferLayout


# An even 5 % background with no rim boost, patches or clusters: only the clumping differs.
FLAT_BACKGROUND = dict(
    background_fail_range=(0.05, 0.05),
    background_edge_boost_range=(0.0, 0.0),
    background_patchiness_range=(0.0, 0.0),
    background_cluster_probability=0.0,
)


@settings(max_examples=150, deadline=None)
@given(
    label=st.sampled_from(CLASSES),
    seed=st.integers(0, 10_000),
    index=st.integers(0, 10_000),
    mixed=st.sampled_from([0.0, 1.0]),
)
def test_every_map_stays_inside_the_wafer_and_the_mask_covers_only_its_fails(label, seed, index, mixed):
    gen = WaferGenerator(seed, GeneratorConfig(mixed_probability=mixed))
    rec = gen.make(label, index)
    grid, mask = rec.die_grid, rec.defect_mask
    assert rec.label == label and grid.dtype == np.uint8
    assert set(np.unique(grid)) <= {0, 1, 2}
    # Every die lies on one round, convex wafer: no die outside its outline, corners empty.
    area = grid != DIE_NONE
    hull = convex_hull_image(area)
    assert hull.sum() - area.sum() <= 0.08 * area.sum() + 12  # digitised small discs are ragged
    y, x = np.nonzero(area)
    fill = area.sum() / ((y.max() - y.min() + 1) * (x.max() - x.min() + 1))
    assert 0.65 <= fill <= 0.93  # a disc fills pi/4 of its box, a flat a bit more
    assert grid[0, 0] == grid[0, -1] == grid[-1, 0] == grid[-1, -1] == DIE_NONE
    # The mask marks fail dies only, and only with the pattern classes drawn.
    assert not ((mask > 0) & (grid != DIE_FAIL)).any()
    patterns = rec.attrs["patterns"]
    assert set(np.unique(mask)) - {0} <= {mask_index(p) for p in patterns}
    if label == NONE_CLASS:
        assert not mask.any() and patterns == []
    else:
        assert (mask == mask_index(label)).sum() >= max(
            gen.config.min_pattern_dies, gen.config.min_pattern_fraction * (grid != DIE_NONE).sum()
        )
        if mixed == 0.0:
            assert patterns == [label]


def test_generator_is_deterministic_per_seed():
    a, b, c = (
        WaferGenerator(5).make("Scratch", 9),
        WaferGenerator(5).make("Scratch", 9),
        WaferGenerator(6).make("Scratch", 9),
    )
    assert np.array_equal(a.die_grid, b.die_grid) and np.array_equal(a.defect_mask, b.defect_mask)
    assert a.die_grid.shape != c.die_grid.shape or not np.array_equal(a.die_grid, c.die_grid)


def test_layouts_are_wide_non_square_and_sizes_span_the_configured_range():
    gen = WaferGenerator(1)
    layouts = [gen.layout(f"P{i}", i) for i in range(300)]
    diameters = np.array([lay.diameter for lay in layouts])
    assert diameters.min() < 25 and diameters.max() > 110
    assert sum(lay.rows != lay.cols for lay in layouts) > 150
    assert any(lay.flat for lay in layouts)


def test_layout_shared_by_a_product_gives_the_same_die_area():
    gen = WaferGenerator(2)
    layout = WaferLayout.sample(np.random.default_rng(0), GeneratorConfig(), "PX")
    a, b = gen.make("Loc", 1, layout=layout), gen.make("Center", 2, layout=layout)
    assert np.array_equal(a.die_grid != 0, b.die_grid != 0)


def test_random_class_fails_well_above_background_and_near_full_mostly_fails():
    gen = WaferGenerator(3)

    def ratio(rec):
        return (rec.die_grid == 2).sum() / (rec.die_grid != 0).sum()

    assert np.mean([ratio(gen.make("Random", i)) for i in range(40)]) > 3 * np.mean(
        [ratio(gen.make("none", i)) for i in range(40)]
    )
    assert min(ratio(gen.make("Near-full", i)) for i in range(20)) > 0.5


def test_dataset_sets_counts_ids_and_oracle_labels():
    sets = generate_dataset(
        DatasetConfig(
            seed=1,
            labeled_per_class={"Donut": 3, "none": 2},
            unlabeled_count=10,
            test_per_class=2,
            n_products=5,
            wafers_per_lot=4,
        )
    )
    assert [r.label for r in sets["labeled"]].count("Donut") == 3 and len(sets["labeled"]) == 5
    assert all(
        r.label is None and r.defect_mask is None and r.attrs["true_label"] in CLASSES for r in sets["unlabeled"]
    )
    assert all(r.split_hint == "test" for r in sets["test"]) and len(sets["test"]) == 18
    keys = [r.key for recs in sets.values() for r in recs]
    assert len(keys) == len(set(keys))
    test_products = {r.product for r in sets["test"]}
    assert not test_products & {r.product for r in sets["labeled"] + sets["unlabeled"]}


def test_background_is_heavy_uneven_and_edge_weighted_like_real_wafers():
    """Real WM-811K 'none' maps: 3.5-14 % fails (10th-90th percentile), ~47 % of them in the outer
    20 % of the radius. The generator's 'none' maps must span that, not sit below it."""
    from waferflow.data.features import wafer_features

    gen = WaferGenerator(4)
    feats = [wafer_features(gen.make("none", i).die_grid) for i in range(150)]
    ratios = np.array([f["fail_ratio"] for f in feats])
    assert np.quantile(ratios, 0.1) < 0.035 and np.quantile(ratios, 0.9) > 0.14
    # edge_ratio of an even background is ~0.36 (the outer 20 % of the radius holds 36 % of the area)
    assert np.median([f["edge_ratio"] for f in feats]) > 0.42
    flat = WaferGenerator(
        4, GeneratorConfig(background_edge_boost_range=(0.0, 0.0), background_patchiness_range=(0.0, 0.0))
    )
    assert np.median([wafer_features(flat.make("none", i).die_grid)["edge_ratio"] for i in range(150)]) < 0.40


def test_background_fails_clump_into_pairs_and_blocks():
    def neighbour_share(cfg):
        gen, shares = WaferGenerator(5, cfg), []
        for i in range(60):
            fail = gen.make("none", i).die_grid == 2
            pad = np.pad(fail, 1)
            touching = pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]
            shares.append((fail & touching).sum() / max(fail.sum(), 1))
        return np.mean(shares)

    single = neighbour_share(GeneratorConfig(**FLAT_BACKGROUND, background_clump_probability=(0.0, 0.0)))
    clumped = neighbour_share(GeneratorConfig(**FLAT_BACKGROUND, background_clump_probability=(0.8, 0.8)))
    assert single < 0.3 and clumped > single + 0.2  # even fails at 5 %: ~19 % have a failing 4-neighbour


def test_background_fails_come_as_short_bars_along_rows_and_columns():
    def bar_share(cfg):
        """Share of fails in a run of 4 failing dies along a row or a column."""
        gen, shares = WaferGenerator(5, cfg), []
        for i in range(60):
            fail = gen.make("none", i).die_grid == 2
            in_bar = np.zeros_like(fail)
            for axis in (0, 1):
                f = np.moveaxis(fail, axis, 0)
                n = len(f) - 3
                run = f[:n] & f[1 : n + 1] & f[2 : n + 2] & f[3 : n + 3]
                b = np.zeros_like(f)
                for k in range(4):
                    b[k : n + k] |= run
                in_bar |= np.moveaxis(b, 0, axis)
            shares.append(in_bar.sum() / max(fail.sum(), 1))
        return np.mean(shares)

    single = bar_share(GeneratorConfig(**FLAT_BACKGROUND, background_clump_probability=(0.0, 0.0)))
    clumped = bar_share(GeneratorConfig(**FLAT_BACKGROUND, background_clump_probability=(0.8, 0.8)))
    # Independent fails at 5 %: ~0.1 % sit in a 4-die run (isotropic spreading alone: ~2 %);
    # bars of 2-4 dies put about a third there.
    assert single < 0.01 and clumped > 0.2


def _mask_radius(rec, label):
    """Normalised distance from the wafer centre of each die of the ``label`` pattern (rim = 1)."""
    rows, cols = np.nonzero(rec.die_grid != DIE_NONE)
    cy, cx = (rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2
    ry, rx = (rows.max() - rows.min() + 1) / 2, (cols.max() - cols.min() + 1) / 2
    py, px = np.nonzero(rec.defect_mask == mask_index(label))
    return np.hypot((py + 0.5 - cy) / ry, (px + 0.5 - cx) / rx)


def test_loc_clusters_may_reach_the_rim_but_edge_loc_sits_on_it():
    gen = WaferGenerator(11)
    loc = [_mask_radius(gen.make("Loc", i), "Loc") for i in range(120)]
    edge = [_mask_radius(gen.make("Edge-Loc", i), "Edge-Loc") for i in range(120)]
    # A Loc cluster's middle stays inside the wafer (WM-811K labels rim-centred clusters
    # Edge-Loc), yet real Loc clusters often run out to the outermost dies (~18 % here).
    assert np.median([np.median(r) for r in loc]) < 0.65 < np.median([np.median(r) for r in edge])
    assert np.mean([r.max() > 0.9 for r in loc]) > 0.13
    assert np.mean([np.median(r) > 0.85 for r in loc]) < 0.05


def test_some_near_full_wafers_fail_solid_with_one_side_still_passing():
    gen, cut = WaferGenerator(2), 0
    for i in range(60):
        grid = gen.make("Near-full", i).die_grid
        on = grid != DIE_NONE
        regions, n = ndimage.label(on & (grid != DIE_FAIL))
        # Pass islands are small (< 5 % of the dies each); a passing side is one large region.
        cut += n > 0 and np.bincount(regions.ravel())[1:].max() > 0.15 * on.sum()
    assert 5 <= cut <= 35  # ~30 % of the Near-full maps


def test_a_pattern_drowned_in_the_background_is_redrawn_until_it_stands_out(monkeypatch):
    """min_pattern_contrast: the accepted pattern's dies fail at least this much more often than
    the background around and under them; without the floor some patterns sink into it."""
    from waferflow.synth import generator as G

    seen: list[float] = []
    real = G._contrast
    monkeypatch.setattr(G, "_contrast", lambda *a: seen.append(real(*a)) or seen[-1])
    heavy = dict(background_fail_range=(0.15, 0.2), background_edge_boost_range=(2.0, 4.0))

    def accepted(floor):
        gen, out = WaferGenerator(3, GeneratorConfig(**heavy, min_pattern_contrast=floor)), []
        for label in ("Loc", "Edge-Loc", "Center"):
            for i in range(40):
                seen.clear()
                gen.make(label, i)
                out.append(seen[-1])  # the last contrast measured is the accepted draw's
        return np.array(out)

    free, floored = accepted(0.0), accepted(0.3)
    assert (free < 0.3).mean() > 0.1  # under a heavy background, faint patterns are drawn ...
    assert floored.min() >= 0.3  # ... and the floor redraws every one of them
    # Whole-wafer patterns are densities, not regions that stand out: the floor leaves them alone.
    seen.clear()
    WaferGenerator(3, GeneratorConfig(min_pattern_contrast=0.99)).make("Random", 0)
    assert not seen


def test_a_contrast_no_pattern_can_reach_fails_loudly_and_names_the_parameter():
    gen = WaferGenerator(0, GeneratorConfig(min_pattern_contrast=1.5))
    with pytest.raises(RuntimeError, match="min_pattern_contrast"):
        gen.make("Loc", 0)


def _scratch_masks(cfg: GeneratorConfig, n: int = 40) -> list[np.ndarray]:
    gen = WaferGenerator(11, cfg)
    return [gen.make("Scratch", i).defect_mask == mask_index("Scratch") for i in range(n)]


def _axis_offset_degrees(mask: np.ndarray) -> float:
    """How far the scratch's principal direction lies from the nearest die row or column."""
    rows, cols = np.nonzero(mask)
    points = np.stack([rows - rows.mean(), cols - cols.mean()])
    _, vectors = np.linalg.eigh(points @ points.T)
    angle = np.degrees(np.arctan2(*vectors[:, -1])) % 90
    return float(min(angle, 90 - angle))


def test_scratches_can_run_along_the_die_grid_and_be_short():
    """scratch_axis_probability: lines along a die row or column (a random direction lies ~22
    degrees off one on average; bent and crossing lines blur it); scratch_length_range: shorter
    lines, fewer dies."""
    aligned = [_axis_offset_degrees(m) for m in _scratch_masks(GeneratorConfig(scratch_axis_probability=1.0))]
    anywhere = [_axis_offset_degrees(m) for m in _scratch_masks(GeneratorConfig())]
    assert np.median(aligned) < 6 and np.median(anywhere) > 12
    fixed = {"diameter_range": (80, 80), "scratch_reach": 1.0}
    short = [m.sum() for m in _scratch_masks(GeneratorConfig(**fixed, scratch_length_range=(0.25, 0.35)))]
    long = [m.sum() for m in _scratch_masks(GeneratorConfig(**fixed, scratch_length_range=(1.4, 1.8)))]
    assert np.median(short) * 2 < np.median(long)


@pytest.mark.parametrize(
    "bad", [{"scratch_length_range": (0.0, 1.0)}, {"scratch_length_range": (1.5, 1.0)}, {"scratch_reach": 1.2}]
)
def test_impossible_scratch_settings_are_refused(bad):
    with pytest.raises(ValueError, match="scratch"):
        GeneratorConfig(**bad)


def test_loc_knobs_move_clusters_towards_the_rim_and_make_them_solid():
    """loc_center_reach: cluster middles out to this radius; loc_density_range: the share of
    failing dies in the cluster (its mask over the mask's convex hull)."""

    def clusters(cfg: GeneratorConfig) -> tuple[list[float], list[float]]:
        gen, radii, solid = WaferGenerator(5, cfg), [], []
        for i in range(80):
            rec = gen.make("Loc", i)
            radii.append(float(np.median(_mask_radius(rec, "Loc"))))
            inside = rec.defect_mask == mask_index("Loc")
            solid.append(inside.sum() / max(1, convex_hull_image(inside).sum()))
        return radii, solid

    light = {"background_fail_range": (0.01, 0.03), "min_pattern_contrast": 0.1}
    near, faint = clusters(GeneratorConfig(**light, loc_center_reach=0.5, loc_density_range=(0.3, 0.4)))
    far, dense = clusters(GeneratorConfig(**light, loc_center_reach=1.0, loc_density_range=(0.95, 1.0)))
    assert np.median(near) + 0.15 < np.median(far)
    assert np.mean([r > 0.8 for r in near]) < 0.03 and np.mean([r > 0.8 for r in far]) > 0.12
    assert np.median(faint) + 0.2 < np.median(dense)


def dies_from_rim(grid: np.ndarray) -> np.ndarray:
    """Each die's taxicab distance to the nearest position off the wafer (1: the outermost dies)."""
    return ndimage.distance_transform_cdt(np.pad(grid != DIE_NONE, 1), metric="taxicab")[1:-1, 1:-1]


def test_edge_ring_knobs_set_how_deep_and_how_dense_the_band_is():
    """edge_ring_depth_range: dies from the rim inwards (WM-811K's rings are 1-2 dies deep);
    edge_ring_density_range: the share of the band's dies that fail (the mask holds failing dies
    only: measured on the outermost dies, whose arc the same seed draws alike)."""

    def rings(cfg: GeneratorConfig) -> tuple[list[float], list[float]]:
        gen, depths, dense = WaferGenerator(3, cfg), [], []
        for i in range(40):
            rec = gen.make("Edge-Ring", i)
            depth = dies_from_rim(rec.die_grid)
            band = rec.defect_mask == mask_index("Edge-Ring")
            depths.append(float(np.quantile(depth[band], 0.9)))
            dense.append(float((rec.die_grid[depth == 1] == DIE_FAIL).mean()))  # the same arcs in both
        return depths, dense

    fixed = {"diameter_range": (60, 60), "background_fail_range": (0.01, 0.02)}
    thin, faint = rings(GeneratorConfig(**fixed, edge_ring_depth_range=(0.8, 1.2), edge_ring_density_range=(0.5, 0.6)))
    deep, solid = rings(GeneratorConfig(**fixed, edge_ring_depth_range=(3.5, 4.0), edge_ring_density_range=(0.95, 1.0)))
    assert np.median(thin) + 1.5 < np.median(deep)
    assert np.median(faint) + 0.15 < np.median(solid)


@pytest.mark.parametrize(
    "bad",
    [
        {"edge_ring_depth_range": (0.0, 2.0)},
        {"edge_ring_depth_range": (3.0, 2.0)},
        {"edge_ring_density_range": (0.0, 1.0)},
        {"edge_ring_density_range": (0.9, 1.2)},
        {"edge_loc_depth_range": (0.0, 0.2)},
        {"edge_loc_depth_range": (0.3, 0.2)},
        {"edge_loc_span_range": (0.0, 0.8)},
        {"edge_loc_span_range": (0.9, 0.8)},
        {"edge_loc_chord_probability": 1.5},
    ],
)
def test_impossible_edge_ring_and_edge_loc_settings_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):  # the message names the setting
        GeneratorConfig(**bad)


def test_edge_loc_knobs_set_how_deep_and_how_long_the_rim_arcs_are():
    """edge_loc_depth_range (wafer radii) and edge_loc_span_range (half-angle, radians) shape the
    Edge-Loc arcs (about half the Edge-Loc maps; the others are blobs centred on the rim, which the
    knobs leave alone)."""

    def arcs(cfg: GeneratorConfig) -> tuple[list[float], list[float]]:
        gen, depths, spans = WaferGenerator(5, cfg), [], []
        for i in range(60):
            rec = gen.make("Edge-Loc", i)
            depth = dies_from_rim(rec.die_grid)
            rows, cols = np.nonzero(rec.defect_mask == mask_index("Edge-Loc"))
            depths.append(float(np.quantile(depth[rows, cols], 0.9)))
            angle = np.arctan2(rows - (depth.shape[0] - 1) / 2, cols - (depth.shape[1] - 1) / 2)
            spans.append(
                len(np.unique(np.floor((angle + np.pi) / (2 * np.pi) * 36))) / 36
            )  # share of 10-degree sectors
        return depths, spans

    fixed = {"diameter_range": (60, 60), "background_fail_range": (0.01, 0.02)}
    # (a thin and short arc holds too few dies to stand as a pattern: redrawn, often as a blob)
    thin, _ = arcs(GeneratorConfig(**fixed, edge_loc_depth_range=(0.02, 0.04), edge_loc_span_range=(1.0, 1.2)))
    deep, long = arcs(GeneratorConfig(**fixed, edge_loc_depth_range=(0.3, 0.38), edge_loc_span_range=(1.0, 1.2)))
    _, short = arcs(GeneratorConfig(**fixed, edge_loc_depth_range=(0.3, 0.38), edge_loc_span_range=(0.2, 0.3)))
    assert np.median(thin) + 4 < np.median(deep)  # dies in from the rim (~1-2 against ~9)
    assert np.median(short) + 0.15 < np.median(long)  # share of the rim's 10-degree sectors (~0.1 against ~0.35)


@pytest.mark.parametrize(
    "bad", [{"loc_density_range": (0.0, 0.5)}, {"loc_density_range": (0.9, 0.5)}, {"loc_center_reach": 1.1}]
)
def test_impossible_loc_settings_are_refused(bad):
    with pytest.raises(ValueError, match="loc_"):
        GeneratorConfig(**bad)


def test_edge_loc_chord_knob_draws_solid_half_moons_from_the_rim():
    """edge_loc_chord_probability: the share of Edge-Loc maps failing solid beyond a chord (14-50 %
    of the wafer; WM-811K labels such half-moons Edge-Loc). At 0 the arcs and rim blobs stay small."""

    def shares(p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gen = WaferGenerator(4, GeneratorConfig(diameter_range=(50, 50), edge_loc_chord_probability=p))
        share, dense, rim = [], [], []
        for i in range(40):
            rec = gen.make("Edge-Loc", i)
            on, region = rec.die_grid != DIE_NONE, rec.defect_mask == mask_index("Edge-Loc")
            share.append(region.sum() / on.sum())
            hull = convex_hull_image(region) & on  # the segment cut off by the chord
            dense.append((rec.die_grid[hull] == DIE_FAIL).mean())
            rim.append(dies_from_rim(rec.die_grid)[region].min())
        return np.array(share), np.array(dense), np.array(rim)

    chord, solid, rim = shares(1.0)
    small, _, _ = shares(0.0)
    assert 0.1 < np.quantile(chord, 0.1) and np.quantile(chord, 0.9) < 0.6
    assert np.median(chord) > 0.2 > np.median(small) + 0.1
    assert np.median(solid) > 0.75
    assert (rim == 1).all()  # every half-moon reaches the outermost dies


def test_edge_loc_blob_depth_knob_keeps_rim_blobs_hugging_the_rim():
    """edge_loc_blob_depth_range: a rim blob reaches in only so deep (WM-811K's Edge-Loc clusters
    hold three quarters of their dies in the outermost two rings); None keeps the deeper blobs of
    before. The arcs are held one die deep here, so the deep dies are the blobs'."""

    def depths(blob_depth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        config = GeneratorConfig(
            diameter_range=(50, 50), edge_loc_depth_range=(0.04, 0.06), edge_loc_blob_depth_range=blob_depth
        )
        gen = WaferGenerator(4, config)
        deepest, outer, rim = [], [], []
        for i in range(60):
            rec = gen.make("Edge-Loc", i)
            steps = dies_from_rim(rec.die_grid)[rec.defect_mask == mask_index("Edge-Loc")]
            deepest.append(steps.max())
            outer.append((steps <= 2).mean())
            rim.append(steps.min())
        return np.array(deepest), np.array(outer), np.array(rim)

    deep, outer, rim = depths((0.05, 0.2))  # 25 dies of radius: 1.25-5 dies deep
    before, outer_before, _ = depths(None)
    assert np.quantile(deep, 0.9) <= 6 and deep.max() <= 9
    assert np.quantile(before, 0.9) >= 7  # blobs out to 0.4 radii deep
    assert np.median(outer) > 0.8 > np.median(outer_before)
    assert (rim == 1).all()  # every region reaches the outermost dies
    with pytest.raises(ValueError, match="edge_loc_blob_depth_range"):
        GeneratorConfig(edge_loc_blob_depth_range=(0.2, 0.05))
