from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from waferflow.data.records import WaferRecord, read_frame, read_records, write_records


@settings(max_examples=40, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 70), st.integers(1, 70)).flatmap(
        lambda s: arrays(np.uint8, s, elements=st.integers(0, 2))
    ),
    with_mask=st.booleans(),
)
def test_parquet_round_trip_is_lossless_for_any_shape(tmp_path_factory, grid, with_mask):
    mask = (grid == 2).astype(np.uint8) * 5 if with_mask else None
    rec = WaferRecord(
        die_grid=grid,
        defect_mask=mask,
        lot_id="lot 1",
        wafer_id="25",
        label="Loc",
        die_size=1683.0,
        source="test",
        attrs={"k": [1, 2]},
        timestamp=datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc),
    )
    path = tmp_path_factory.mktemp("rt") / "r.parquet"
    write_records([rec], path)
    back = read_records(path)[0]
    assert back.die_grid.shape == grid.shape
    assert np.array_equal(back.die_grid, grid)
    assert back.die_grid.dtype == np.uint8
    if with_mask:
        assert np.array_equal(back.defect_mask, mask)
    else:
        assert back.defect_mask is None
    assert (back.lot_id, back.wafer_id, back.label, back.die_size, back.attrs) == (
        "lot 1",
        "25",
        "Loc",
        1683.0,
        {"k": [1, 2]},
    )
    assert back.timestamp == rec.timestamp


def test_odd_shapes_and_unlabeled_round_trip(tmp_path):
    recs = [
        WaferRecord(die_grid=np.ones(shape, np.uint8), lot_id="L", wafer_id=str(i))
        for i, shape in enumerate([(1, 1), (3, 200), (211, 5), (52, 52)])
    ]
    path = write_records(recs, tmp_path / "odd.parquet")
    frame = read_frame(path)
    assert list(zip(frame.height, frame.width)) == [(1, 1), (3, 200), (211, 5), (52, 52)]
    assert frame.label.isna().all()
    assert [r.shape for r in read_records(path)] == [(1, 1), (3, 200), (211, 5), (52, 52)]


def test_record_rejects_bad_structure():
    with pytest.raises(ValueError, match="2-D"):
        WaferRecord(die_grid=np.ones(5, np.uint8), lot_id="L", wafer_id="1")
    with pytest.raises(TypeError, match="uint8"):
        WaferRecord(die_grid=np.ones((2, 2), np.int64), lot_id="L", wafer_id="1")
    with pytest.raises(ValueError, match="shape"):
        WaferRecord(
            die_grid=np.ones((2, 2), np.uint8), defect_mask=np.zeros((3, 2), np.uint8), lot_id="L", wafer_id="1"
        )
