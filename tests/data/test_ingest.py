import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import disc
from tests.data.test_parsers import CSV, lswmd_frame
from waferflow.data.ingest import ingest
from waferflow.data.records import read_records, write_records


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ingest_mixed_folder_keeps_good_quarantines_bad_and_touches_nothing(tmp_path, small_records):
    raw = tmp_path / "raw"
    raw.mkdir()
    lswmd_frame().to_pickle(raw / "LSWMD.pkl")
    (raw / "dies.csv").write_text(CSV)
    (raw / "wrong.csv").write_text("a,b\n1,2\n")
    (raw / "truncated.pkl").write_bytes((raw / "LSWMD.pkl").read_bytes()[:100])
    (raw / "notes.md").write_text("not data")
    write_records(small_records, raw / "canonical.parquet")
    np.savez(raw / "m.npz", np.stack([disc(52, 52)] * 2), np.eye(8)[:2])
    before = _digest(raw)

    out = tmp_path / "out" / "ingested.parquet"
    report = ingest([raw], out, tmp_path / "q", tmp_path / "report.json", progress=False)

    assert _digest(raw) == before  # nothing the user gave is modified or deleted
    assert report.records == 4 + 2 + len(small_records) + 2
    assert len(read_records(out)) == report.records
    assert report.files[str(raw / "wrong.csv")]["error"].startswith("CSV header lacks")
    assert "truncated" in report.files[str(raw / "truncated.pkl")]["error"]
    assert report.skipped == [str(raw / "notes.md")]
    assert report.per_format == {"canonical": 1, "csv": 2, "lswmd": 2, "npz": 1}
    rejects = pd.read_csv(tmp_path / "q" / "rejects.csv", dtype=str)
    assert len(rejects) == report.rejected == 2 + 2  # 2 bad files + 2 bad CSV rows
    file_level = rejects[rejects["row"].isna()]
    assert set(file_level["file"]) == {str(raw / "wrong.csv"), str(raw / "truncated.pkl")}
    assert file_level["sha256"].str.len().eq(64).all()
    row_level = rejects[rejects["row"].notna()].set_index("row")
    assert row_level.loc["7", "field"] == "HBIN" and row_level.loc["7", "raw"] == "A1;4;1;0;x;"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["rejected_by_reason"]["HBIN: not an integer"] == 1
    assert saved["per_class"]["Edge-Ring"] >= 1


def test_ingest_missing_source_fails_loudly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest([tmp_path / "nope"], tmp_path / "o.parquet", tmp_path / "q", progress=False)
