"""Matrix CSV wafer maps (one line per row of dies): the real WM-811K wafer in ../shared/formats
both ways (0/1/2 codes and tester bin codes), and files the tests write."""

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT
from waferflow.data.parsers import CsvOptions, FileRejected, ParserOptions, parse_file

SAMPLES = PROJECT_ROOT.parent / "shared" / "formats" / "wm811k-csv"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no ../shared/formats beside the project")
def test_bin_code_matrix_maps_to_the_same_wafer_as_its_0_1_2_twin():
    (codes,) = parse_file(SAMPLES / "bincode_example_lot23658_w03.csv").records  # blank = no die, 3/5/7/12 fail
    (plain,) = parse_file(SAMPLES / "unlabeled_lot23658_w03.csv").records
    assert codes.source == plain.source == "csv_matrix" and codes.die_grid.shape == (40, 40)
    assert np.array_equal(codes.die_grid, plain.die_grid)
    assert np.bincount(plain.die_grid.ravel()).tolist() == [374, 793, 433]


def test_written_matrix_blank_and_null_codes_are_no_die(tmp_path):
    (tmp_path / "w.csv").write_text(",1,\n1,7,0\n,1,\n")
    (rec,) = parse_file(tmp_path / "w.csv").records
    assert rec.die_grid.tolist() == [[0, 1, 0], [1, 2, 0], [0, 1, 0]] and rec.lot_id == "w"
    opts = ParserOptions(csv=CsvOptions(null_bins=(), fail_bins=(0, 7)))  # 0 is a real fail bin here
    assert parse_file(tmp_path / "w.csv", opts).records[0].die_grid[1].tolist() == [1, 2, 2]


def test_written_matrix_problems_name_the_line_and_column(tmp_path):
    (tmp_path / "neither.csv").write_text("0,1,0\n1,9,1\n")
    (rej,) = parse_file(tmp_path / "neither.csv", ParserOptions(csv=CsvOptions(fail_bins=(2,)))).rejects
    assert (rej.row, rej.field) == ("2", "column 2") and "bin 9 is in neither" in rej.reason
    (tmp_path / "text.csv").write_text("0,1,0\n1,x,1\n")
    (rej,) = parse_file(tmp_path / "text.csv").rejects
    assert (rej.row, rej.field) == ("2", "column 2") and "'x'" in rej.reason
    (tmp_path / "ragged.csv").write_text("0,1,0\n1,1\n0,1,0\n")
    (rej,) = parse_file(tmp_path / "ragged.csv").rejects
    assert rej.row == "2" and "most lines 3" in rej.reason


def test_layout_option_forces_the_reading(tmp_path):
    (tmp_path / "dies.csv").write_text("0,1,0\n1,2,1\n")
    with pytest.raises(FileRejected, match="header lacks column"):
        parse_file(tmp_path / "dies.csv", ParserOptions(csv=CsvOptions(layout="die_list")))
    (tmp_path / "m.csv").write_text("lot,wafer,x,y,bin\nL1,1,0,0,1\n")
    assert parse_file(tmp_path / "m.csv").records[0].source == "csv"  # a header: a die list
