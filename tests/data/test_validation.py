import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import disc
from waferflow.data.parsers import to_die_grid
from waferflow.data.records import WaferRecord, read_frame, records_to_table
from waferflow.data.validation import ValidationConfig, ValidationFailed, validate_frame, write_validation_outputs


def _frame(records) -> pd.DataFrame:
    return records_to_table(records).to_pandas()


def _good(i: int, **kw) -> WaferRecord:
    return WaferRecord(die_grid=disc(20, 22, [(10, 10)]), lot_id="L", wafer_id=str(i), label="Loc", **kw)


def test_clean_table_passes(small_records):
    outcome = validate_frame(_frame(small_records), ValidationConfig())
    assert outcome.rejected.empty and len(outcome.valid) == len(small_records)
    assert all(e["success"] for e in outcome.expectations)


def test_corrupted_wafers_are_rejected_with_the_expectation_that_failed():
    wrong_code = disc(20, 22)
    wrong_code[3, 3] = 7
    nan_grid = disc(20, 22).astype(float)
    nan_grid[4, 4] = np.nan
    mask_off = np.zeros((20, 22), np.uint8)
    mask_off[0, 0] = 3  # corner: no die there
    records = [
        _good(0),
        WaferRecord(die_grid=to_die_grid(wrong_code), lot_id="L", wafer_id="1"),
        WaferRecord(die_grid=to_die_grid(nan_grid), lot_id="L", wafer_id="2"),
        _good(3),
        _good(3),  # duplicate id
        WaferRecord(die_grid=disc(20, 22), lot_id="L", wafer_id="5", label="Blob"),
        WaferRecord(die_grid=np.zeros((20, 22), np.uint8), lot_id="L", wafer_id="6"),
        WaferRecord(die_grid=disc(2, 2000), lot_id="L", wafer_id="7"),
        WaferRecord(die_grid=disc(20, 22), defect_mask=mask_off, lot_id="L", wafer_id="8", label="Edge-Loc"),
        _good(9),
    ]
    outcome = validate_frame(_frame(records), ValidationConfig(max_side=1024))
    reasons = dict(
        zip(
            outcome.rejected["wafer_id"] + "#" + outcome.rejected.index.astype(str),
            outcome.rejected["failed_expectations"],
        )
    )
    by_wafer = {}
    for key, why in reasons.items():
        by_wafer.setdefault(key.split("#")[0], []).append(why)
    assert set(outcome.valid["wafer_id"]) == {"0", "9"}
    assert "max_code" in by_wafer["1"][0]
    assert "max_code" in by_wafer["2"][0]  # NaN became the invalid code at ingest
    assert len(by_wafer["3"]) == 2 and all("compound_columns_to_be_unique" in w for w in by_wafer["3"])
    assert "expect_column_values_to_be_in_set(column=label" in by_wafer["5"][0]
    assert "n_dies" in by_wafer["6"][0]
    assert "width" in by_wafer["7"][0] and "height" in by_wafer["7"][0]
    assert "mask_off_wafer" in by_wafer["8"][0]


def test_too_many_rejects_fails_after_writing_everything(tmp_path):
    bad = disc(20, 22)
    bad[0, 0] = 9
    records = [_good(0), WaferRecord(die_grid=to_die_grid(bad), lot_id="L", wafer_id="1")]
    cfg = ValidationConfig(max_reject_fraction=0.1)
    outcome = validate_frame(_frame(records), cfg)
    with pytest.raises(ValidationFailed, match=r"1 of 2 wafers \(50.00%\)"):
        write_validation_outputs(outcome, cfg, tmp_path / "valid.parquet", tmp_path / "q", tmp_path / "r")
    assert len(read_frame(tmp_path / "q" / "rejected.parquet")) == 1
    assert len(read_frame(tmp_path / "valid.parquet")) == 1
    summary = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert summary["success"] is False and summary["rejected"] == 1
    html = (tmp_path / "r" / "validation.html").read_text()
    assert "Validation FAILED" in html and "max_code" in html
    assert pd.read_csv(tmp_path / "q" / "rejects.csv")["wafer_id"].astype(str).tolist() == ["1"]


def test_malformed_table_is_a_table_level_failure():
    frame = _frame([_good(0)])
    frame["unexpected_column"] = 1
    with pytest.raises(ValidationFailed, match="table-level"):
        validate_frame(frame, ValidationConfig())
