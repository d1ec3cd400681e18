"""The fixed lot split of real maps and the sim-to-real gap measure."""

import pytest

from waferflow.classes import CLASSES
from waferflow.evaluation.real_maps import PARTS, load_real_frame, real_part
from waferflow.evaluation.sim_to_real import gap_table, save_side_by_side, sim_to_real_gap
from waferflow.synth.generator import GeneratorConfig, WaferGenerator


def test_lot_split_is_fixed_by_lot_name_and_halves_the_lots():
    lots = [f"lot{i}" for i in range(2000)]
    parts = [real_part(lot) for lot in lots]
    assert set(parts) == set(PARTS) and 0.45 < parts.count("test") / len(parts) < 0.55
    assert [real_part(lot) for lot in reversed(lots)] == parts[::-1]  # no state, no dependence on other lots


def test_no_real_data_is_said_not_found(tmp_path):
    frame, info = load_real_frame(tmp_path / "absent")
    assert frame is None and info["available"] is False and "no supported files" in info["reason"]
    with pytest.raises(ValueError, match="unknown real-data part"):
        load_real_frame(tmp_path, "train")


def _maps(config: GeneratorConfig, seed: int, per_class: int = 25):
    gen = WaferGenerator(seed=seed, config=config)
    recs = [gen.make(c, index=i) for c in CLASSES for i in range(per_class)]
    return [r.die_grid for r in recs], [r.label for r in recs]


def test_gap_is_small_between_draws_of_one_generator_and_large_across_a_shift(tmp_path):
    base = GeneratorConfig()
    same = sim_to_real_gap(*_maps(base, 0), *_maps(base, 1))
    heavy = sim_to_real_gap(*_maps(base, 0), *_maps(base.model_copy(update={"background_fail_range": (0.3, 0.5)}), 1))
    for name in ("none", "Loc", "all"):
        assert heavy["per_class"][name]["features"]["fail_ratio"] > max(
            0.5, 4 * same["per_class"][name]["features"]["fail_ratio"]
        )
        assert heavy["per_class"][name]["mean_distance"] > 2 * same["per_class"][name]["mean_distance"]
    table = gap_table(heavy)
    assert list(table["class"]) == [*CLASSES, "all"]
    assert (table["fail_ratio_real"] >= table["fail_ratio_generated"]).loc[table["class"] == "none"].all()
    png = save_side_by_side(*_maps(base, 0, 6), *_maps(base, 1, 6), tmp_path / "side.png", per_side=3)
    assert png.stat().st_size > 10_000
