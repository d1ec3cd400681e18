"""STDF V4 wafer sort files, written by the tests with Semi-ATE's own record classes, one rule each."""

import csv
from pathlib import Path

import numpy as np
import pytest
from Semi_ATE import STDF

from waferflow.classes import DIE_FAIL, DIE_NONE, DIE_PASS
from waferflow.data.ingest import ingest
from waferflow.data.parsers import FileRejected, ParserOptions, parse_file
from waferflow.data.parsers.stdf import StdfOptions, parse_stdf

PASSED = ["0"] * 8  # PART_FLG, most significant bit first
FAILED = ["0", "0", "0", "0", "1", "0", "0", "0"]  # bit 3
NO_DECISION = ["0", "0", "0", "1", "0", "0", "0", "0"]  # bit 4: the pass/fail bit is invalid


def record(kind: str, **values) -> bytes:
    rec = getattr(STDF, kind)(endian="<")
    for name, value in values.items():
        rec.set_value(name, value)
    return rec.__repr__()  # Semi-ATE packs a record in __repr__


def wafer(wafer_id: str, dies, head: int = 1, started: int = 1_700_000_000, wrr: bool = True) -> bytes:
    """WIR, a PIR/PRR pair per die (x, y, flag, hard bin, soft bin), WRR."""
    out = record("WIR", HEAD_NUM=head, SITE_GRP=255, START_T=started, WAFER_ID=wafer_id)
    for x, y, flag, hard, soft in dies:
        out += record("PIR", HEAD_NUM=head, SITE_NUM=1)
        out += record(
            "PRR", HEAD_NUM=head, SITE_NUM=1, PART_FLG=flag, HARD_BIN=hard, SOFT_BIN=soft, X_COORD=x, Y_COORD=y
        )
    if wrr:
        out += record("WRR", HEAD_NUM=head, SITE_GRP=255, FINISH_T=started + 60, PART_CNT=len(dies), WAFER_ID=wafer_id)
    return out


def stdf_file(
    path: Path, *wafers: bytes, bins: dict[int, str] | None = None, pos: tuple[str, str] | None = None
) -> Path:
    body = record("FAR", CPU_TYPE=2, STDF_VER=4) + record("MIR", LOT_ID="LOT7", PART_TYP="DEV9", START_T=1)
    if pos:
        body += record("WCR", POS_X=pos[0], POS_Y=pos[1])
    body += b"".join(wafers)
    for number, verdict in (bins or {}).items():
        body += record("HBR", HEAD_NUM=255, SITE_NUM=255, HBIN_NUM=number, HBIN_CNT=1, HBIN_PF=verdict)
    body += record("MRR", FINISH_T=2)
    path.write_bytes(body)
    return path


# a 3 x 3 wafer, corners absent: fails at (1, 0) and the centre; (2, 1) failed, then passed on retest
CROSS = [
    (1, 0, FAILED, 5, 50),
    (0, 1, PASSED, 1, 10),
    (1, 1, FAILED, 6, 60),
    (2, 1, FAILED, 5, 50),
    (1, 2, PASSED, 1, 10),
    (2, 1, PASSED, 1, 11),
]


def test_wafers_pass_fail_by_the_part_flag_retests_keep_the_last_result(tmp_path):
    path = stdf_file(tmp_path / "lot.stdf", wafer("W01", CROSS), wafer("W02", CROSS[:2], started=0))
    result = parse_stdf(path)
    assert not result.rejects
    first, second = result.records
    expected = np.array([[0, 2, 0], [1, 2, 1], [0, 1, 0]], np.uint8)  # rows = y from its smallest, x to the right
    np.testing.assert_array_equal(first.die_grid, expected)
    assert (first.lot_id, first.wafer_id, first.product, first.source) == ("LOT7", "W01", "DEV9", "stdf")
    assert first.attrs["retested_dies"] == 1 and first.attrs["dies_tested"] == 5
    assert "part_count_mismatch" not in first.attrs  # WRR counted 6 PRRs, 6 were read
    assert first.timestamp.year == 2023 and second.timestamp is None
    np.testing.assert_array_equal(second.die_grid, [[0, 2], [1, 0]])  # (1, 0) failed, (0, 1) passed


def test_wafer_configuration_orients_the_map_as_the_prober_saw_it(tmp_path):
    plain = parse_stdf(stdf_file(tmp_path / "a.stdf", wafer("W", CROSS))).records[0].die_grid
    up_left = parse_stdf(stdf_file(tmp_path / "b.stdf", wafer("W", CROSS), pos=("L", "U"))).records[0].die_grid
    np.testing.assert_array_equal(up_left, plain[::-1, ::-1])


def test_pass_bins_replace_the_flag_and_pick_the_hard_or_soft_bin(tmp_path):
    path = stdf_file(tmp_path / "lot.stdf", wafer("W", CROSS))
    hard = parse_stdf(path, StdfOptions(pass_bins=(1, 5))).records[0].die_grid
    assert hard[1, 1] == DIE_FAIL and hard[0, 1] == DIE_PASS  # hard bin 6 fails, hard bin 5 passes
    soft = parse_stdf(path, StdfOptions(pass_bins=(10,), bin="soft")).records[0].die_grid
    assert soft[1, 2] == DIE_FAIL and soft[1, 0] == DIE_PASS  # the retest's soft bin 11 is not a pass bin
    assert (soft == DIE_NONE).sum() == 4


def test_no_decision_falls_back_to_the_declared_bin_else_rejects_unless_told(tmp_path):
    dies = [(0, 0, NO_DECISION, 1, 1), (1, 0, NO_DECISION, 7, 7), (2, 0, PASSED, 9, 9)]
    declared = parse_stdf(stdf_file(tmp_path / "d.stdf", wafer("W", dies), bins={1: "P", 7: "F"}))
    np.testing.assert_array_equal(declared.records[0].die_grid, [[1, 2, 1]])

    undeclared = stdf_file(tmp_path / "u.stdf", wafer("W", dies), bins={1: "P"})
    (reject,) = parse_stdf(undeclared).rejects
    assert reject.field == "PART_FLG" and "[7]" in reject.reason and "undeclared_bins" in reject.reason
    kept = parse_stdf(undeclared, StdfOptions(undeclared_bins="fail")).records[0]
    np.testing.assert_array_equal(kept.die_grid, [[1, 2, 1]])
    assert kept.attrs["undeclared_bins"] == {"7": 1}


def test_a_truncated_file_keeps_the_wafers_it_finished(tmp_path):
    whole = stdf_file(tmp_path / "whole.stdf", wafer("W01", CROSS), wafer("W02", CROSS)).read_bytes()
    cut = tmp_path / "cut.stdf"
    cut.write_bytes(whole[: whole.index(b"W02") + 40])  # inside the second wafer's PRRs
    result = parse_stdf(cut)
    assert [r.wafer_id for r in result.records] == ["W01"]
    (reject,) = result.rejects
    assert reject.row == "1" and reject.field == "WRR" and "truncated" in reject.reason


def test_wafers_without_coordinates_or_dies_are_rejected_beside_good_ones(tmp_path):
    package = [(-32768, -32768, PASSED, 1, 1)]
    path = stdf_file(tmp_path / "x.stdf", wafer("A", package), wafer("B", []), wafer("C", CROSS))
    result = parse_stdf(path)
    assert [r.wafer_id for r in result.records] == ["C"]
    reasons = {r.row: (r.field, r.reason) for r in result.rejects}
    assert reasons["0"][0] == "X_COORD,Y_COORD" and "package test" in reasons["0"][1]
    assert reasons["1"][0] == "PRR" and "no die" in reasons["1"][1]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"lot,wafer,x,y,bin\n", "does not begin with a FAR"),
        (b"\x02\x00\x00\x0a\x02\x03", "only STDF V4"),
        (b"\x02\x00\x00\x0a\x07\x04", "byte order unknown"),
    ],
)
def test_files_that_are_not_stdf_v4_are_rejected_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.std"
    path.write_bytes(content)
    with pytest.raises(FileRejected, match=reason):
        parse_file(path)


def test_a_file_with_no_wafer_is_rejected(tmp_path):
    path = tmp_path / "final_test.stdf"
    path.write_bytes(record("FAR", CPU_TYPE=2, STDF_VER=4) + record("MIR", LOT_ID="L") + record("MRR", FINISH_T=1))
    with pytest.raises(FileRejected, match="no wafer"):
        parse_stdf(path)


def test_ingest_reads_stdf_with_the_configured_bins_and_quarantines_bad_wafers(tmp_path):
    src = tmp_path / "tester"
    src.mkdir()
    stdf_file(src / "lot7.std", wafer("W01", CROSS), wafer("W02", [(-32768, 0, PASSED, 1, 1)]))
    before = (src / "lot7.std").read_bytes()
    options = ParserOptions(stdf=StdfOptions(pass_bins=(1,)))
    report = ingest([src], tmp_path / "out.parquet", tmp_path / "q", options=options, progress=False)
    assert report.records == 1 and report.rejected == 1 and report.per_format.get("stdf") == 1
    with open(tmp_path / "q" / "rejects.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["file"].endswith("lot7.std") and row["row"] == "1" and row["field"] == "X_COORD,Y_COORD"
    assert (src / "lot7.std").read_bytes() == before  # the user's file is untouched


@pytest.mark.parametrize("compress", ["gzip", "bz2", "lzma"])
def test_compressed_stdf_is_recognised_by_its_content(tmp_path, compress):
    import importlib

    plain = stdf_file(tmp_path / "plain.stdf", wafer("W01", CROSS)).read_bytes()
    packed = tmp_path / "packed.stdf"
    packed.write_bytes(importlib.import_module(compress).compress(plain))
    (rec,) = parse_file(packed).records
    np.testing.assert_array_equal(rec.die_grid, parse_stdf(tmp_path / "plain.stdf").records[0].die_grid)
