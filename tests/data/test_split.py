import pandas as pd
import pytest

from waferflow.data.records import grid_from_row, records_to_table
from waferflow.data.split import SplitConfig, resize_frame, split_counts, split_frame
from waferflow.synth import DatasetConfig, generate_dataset


@pytest.fixture(scope="module")
def frame():
    sets = generate_dataset(DatasetConfig(seed=3, labeled_per_class=20, unlabeled_count=15, test_per_class=4))
    return records_to_table([r for recs in sets.values() for r in recs]).to_pandas()


def test_split_is_deterministic_stratified_and_honours_source_test(frame):
    cfg = SplitConfig(seed=5, val_fraction=0.2)
    a, b = split_frame(frame, cfg), split_frame(frame.sample(frac=1, random_state=1), cfg)
    for name in a:
        assert a[name][["lot_id", "wafer_id"]].equals(b[name][["lot_id", "wafer_id"]])
    counts = split_counts(a)
    assert counts["test"]["total"] == 36 and all(counts["test"][c] == 4 for c in counts["test"] if c != "total")
    assert counts["val"]["total"] == 36 and all(counts["val"][c] == 4 for c in counts["val"] if c != "total")
    assert counts["train"]["total"] == 144 and counts["unlabeled"]["total"] == 15
    keys = [set(zip(p.lot_id, p.wafer_id)) for p in a.values()]
    assert sum(map(len, keys)) == len(set().union(*keys)) == len(frame)


def test_split_without_source_test_uses_fractions(frame):
    labeled = frame[frame.label.notna()]
    parts = split_frame(labeled, SplitConfig(honour_source_split=False, val_fraction=0.15, test_fraction=0.15))
    assert abs(len(parts["test"]) - 0.15 * len(labeled)) <= 1
    assert abs(len(parts["val"]) - 0.15 * len(labeled)) <= 1


def test_class_with_a_single_wafer_stays_in_train(frame):
    labeled = frame[frame.label.notna() & (frame.split_hint != "test")].copy()
    one = labeled[labeled.label == "Donut"].head(1)
    labeled = pd.concat([labeled[labeled.label != "Donut"], one])
    parts = split_frame(labeled, SplitConfig(honour_source_split=False))
    assert (parts["train"].label == "Donut").sum() == 1


def test_resize_frame_records_original_shape(frame):
    small = resize_frame(frame.head(5), (32, 40))
    row = small.iloc[0].to_dict()
    assert grid_from_row(row).shape == (32, 40)
    assert f'"orig_shape": [{frame.iloc[0].height}, {frame.iloc[0].width}]' in row["attrs"]
