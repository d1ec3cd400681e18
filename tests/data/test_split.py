import pandas as pd
import pytest

from waferflow.data.records import grid_from_row, records_to_table
from waferflow.data.split import SplitConfig, resize_frame, split_counts, split_frame
from waferflow.synth import DatasetConfig, generate_dataset


@pytest.fixture(scope="module")
def frame():
    sets = generate_dataset(DatasetConfig(seed=3, labeled_per_class=20, unlabeled_count=15, test_per_class=4))
    return records_to_table([r for recs in sets.values() for r in recs]).to_pandas()


def _lots(part: pd.DataFrame) -> set:
    return set(part["lot_id"])


def test_split_is_deterministic_lot_disjoint_and_honours_source_test(frame):
    cfg = SplitConfig(seed=5, val_fraction=0.2)
    a, b = split_frame(frame, cfg), split_frame(frame.sample(frac=1, random_state=1), cfg)
    for name in a:
        assert a[name][["lot_id", "wafer_id"]].equals(b[name][["lot_id", "wafer_id"]])
    counts = split_counts(a)
    assert counts["test"]["total"] == 36 and all(
        counts["test"][c] == 4 for c in counts["test"] if c not in ("total", "lots")
    )
    assert 18 <= counts["val"]["total"] <= 54 and counts["train"]["total"] + counts["val"]["total"] == 180
    assert counts["lots_in_two_splits"] == 0 and counts["moved_to_test"] == 0 and counts["val"]["lots"] >= 2
    assert not (_lots(a["train"]) & _lots(a["val"])) and not (_lots(a["train"]) & _lots(a["test"]))
    assert len({c for c in a["val"]["label"]}) >= 6  # stratified as far as whole lots allow
    keys = [set(zip(p.lot_id, p.wafer_id)) for p in a.values()]
    assert sum(map(len, keys)) == len(set().union(*keys)) == len(frame)


def test_split_without_source_test_holds_out_about_the_fractions_in_whole_lots(frame):
    labeled = frame[frame.label.notna()]
    parts = split_frame(labeled, SplitConfig(honour_source_split=False, val_fraction=0.15, test_fraction=0.15))
    for name in ("test", "val"):  # lots of 10 wafers: the fraction holds to within a lot or so
        assert abs(len(parts[name]) - 0.15 * len(labeled)) <= 15, name
    assert split_counts(parts)["lots_in_two_splits"] == 0


def test_labeled_wafers_of_a_source_test_lot_move_to_test(frame):
    labeled = frame[frame.label.notna()].copy()
    test_lot = labeled[labeled.split_hint == "test"]["lot_id"].iloc[0]
    stray = labeled[labeled.split_hint != "test"].index[:3]
    labeled.loc[stray, "lot_id"] = test_lot  # three training-pool wafers from a lot the source tests on
    parts = split_frame(labeled, SplitConfig(seed=5))
    counts = split_counts(parts)
    assert counts["moved_to_test"] == 3 and counts["test"]["total"] == 39 and counts["lots_in_two_splits"] == 0


def test_a_single_lot_is_never_split(frame):
    one_lot = frame[frame.label.notna() & (frame.split_hint != "test")].copy()
    one_lot["lot_id"] = "L1"
    parts = split_frame(one_lot, SplitConfig(honour_source_split=False))
    assert len(parts["train"]) == len(one_lot) and parts["val"].empty and parts["test"].empty


def test_resize_frame_records_original_shape(frame):
    small = resize_frame(frame.head(5), (32, 40))
    row = small.iloc[0].to_dict()
    assert grid_from_row(row).shape == (32, 40)
    assert f'"orig_shape": [{frame.iloc[0].height}, {frame.iloc[0].width}]' in row["attrs"]


def test_a_source_that_fixes_no_test_set_gets_its_own_lot_hold_out_beside_one_that_does(frame):
    generated = frame[frame.label.notna()]
    fab = generated[generated.split_hint != "test"].copy()
    fab["source"], fab["split_hint"] = "lswmd", None  # a fab's labeled files: no test hint
    fab["lot_id"] = "fab-" + fab["lot_id"].astype(str)
    parts = split_frame(pd.concat([generated, fab], ignore_index=True), SplitConfig(seed=5))
    counts = split_counts(parts)
    assert counts["test_by_source"]["synth"] == 36  # the generator's own test set, as before
    assert abs(counts["test_by_source"]["lswmd"] - 0.15 * len(fab)) <= 15  # whole lots, about test_fraction
    assert counts["lots_in_two_splits"] == 0 and counts["moved_to_test"] == 0
    trained = pd.concat([parts["train"], parts["val"]])
    assert (trained["source"] == "lswmd").sum() + counts["test_by_source"]["lswmd"] == len(fab)
