"""Real wafer maps from ../shared/data/ (when present) go through the matching parser."""

import json
from pathlib import Path

import pytest

from waferflow.data.ingest import discover, ingest
from waferflow.data.records import read_frame

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = sorted(p for p in SHARED_DATA.iterdir() if p.is_dir()) if SHARED_DATA.is_dir() else []


@pytest.mark.skipif(not SOURCES, reason="no real data in ../shared/data")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_real_data_ingests_with_consistent_counts(source, tmp_path):
    files, _ = discover([source])
    if not files:
        pytest.skip(f"{source} has no file of a supported type")
    out = tmp_path / "real.parquet"
    report = ingest([source], out, tmp_path / "q", tmp_path / "r.json", progress=False)
    assert report.records > 0, report.summary()
    frame = read_frame(out)
    assert len(frame) == report.records == sum(report.per_class.values())
    assert sum(f["records"] for f in report.files.values()) == report.records
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["records"] == report.records and saved["rejected"] == report.rejected
