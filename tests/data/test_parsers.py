"""Every parser on fixtures written here in the real formats, good and corrupted."""

import os
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import disc
from waferflow.classes import DIE_INVALID
from waferflow.data.parsers import FileRejected, parse_file
from waferflow.data.parsers.csv_dies import CsvOptions, parse_csv
from waferflow.data.parsers.image import grid_to_grey
from waferflow.data.parsers.npz import NpzOptions, parse_npz


def lswmd_frame() -> pd.DataFrame:
    """A DataFrame laid out exactly like WM-811K's LSWMD.pkl (nested labels, empty arrays)."""
    empty = np.zeros((0, 0))
    return pd.DataFrame(
        {
            "waferMap": [disc(26, 26, [(13, 13)]), disc(30, 34), disc(45, 48, [(2, 20)]), disc(26, 26)],
            "dieSize": [1683.0, 1683.0, 2460.0, 1683.0],
            "lotName": ["lot1", "lot1", "lot2", "lot3"],
            "waferIndex": [1.0, 2.0, 1.0, 25.0],
            "trianTestLabel": [
                np.array([["Training"]], dtype=object),
                np.array([["Test"]], dtype=object),
                empty,
                empty,
            ],
            "failureType": [np.array([["none"]], dtype=object), np.array([["Edge-Ring"]], dtype=object), empty, empty],
        }
    )


def test_lswmd_pickle_as_distributed(tmp_path):
    path = tmp_path / "LSWMD.pkl"
    lswmd_frame().to_pickle(path)
    result = parse_file(path)
    assert not result.rejects
    recs = result.records
    assert [(r.lot_id, r.wafer_id, r.label, r.split_hint) for r in recs] == [
        ("lot1", "1", "none", "train"),
        ("lot1", "2", "Edge-Ring", "test"),
        ("lot2", "1", None, None),
        ("lot3", "25", None, None),
    ]
    assert recs[1].shape == (30, 34) and recs[2].die_size == 2460.0
    assert np.array_equal(recs[0].die_grid, disc(26, 26, [(13, 13)]))
    assert recs[0].source == "lswmd" and recs[0].source_ref.endswith("LSWMD.pkl#0")


def test_lswmd_written_by_old_pandas_module_paths(tmp_path):
    """The original file names pandas.indexes.* (pandas < 0.20); read_pickle's compat layer maps it."""
    blob = pickle.dumps(lswmd_frame(), protocol=2)
    for new, old in [
        (b"pandas.core.indexes.base", b"pandas.indexes.base"),
        (b"pandas.core.indexes.range", b"pandas.indexes.range"),
        (b"pandas.core.internals.managers", b"pandas.core.internals"),
        (b"numpy._core.multiarray", b"numpy.core.multiarray"),
    ]:  # numpy 1's path
        blob = blob.replace(new, old)
    assert b"pandas.indexes.base" in blob and b"c__builtin__" in blob  # Python 2 names for builtins too
    path = tmp_path / "LSWMD_legacy.pkl"
    path.write_bytes(blob)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(blob)
    result = parse_file(path)
    assert len(result.records) == 4 and result.records[1].label == "Edge-Ring"


class _RunsCode:
    """What a hostile pickle holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["whole file", "in a cell"])
def test_lswmd_pickle_that_runs_code_is_refused_without_running_it(tmp_path, where):
    marker = tmp_path / "PWNED"
    payload = _RunsCode(marker)
    if where == "in a cell":
        frame = lswmd_frame()
        frame["waferMap"] = frame["waferMap"].astype(object)
        frame.at[2, "waferMap"] = payload
        payload = frame
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(FileRejected, match="posix.system|os.system") as err:
        parse_file(path)
    assert "refused without running it" in err.value.reason
    assert not marker.exists()


def test_lswmd_pickle_reaching_a_method_through_an_allowed_class_is_refused(tmp_path):
    """Protocol 4 resolves dotted names (DataFrame.eval): only exact allowed names pass."""
    blob = b"\x80\x04\x8c\x11pandas.core.frame\x94\x8c\x0eDataFrame.eval\x94\x93\x94."
    path = tmp_path / "dotted.pkl"
    path.write_bytes(blob)
    with pytest.raises(FileRejected, match="DataFrame.eval"):
        parse_file(path)


def test_lswmd_bad_rows_are_rejected_and_good_rows_kept(tmp_path):
    frame = lswmd_frame()
    frame.at[1, "waferMap"] = np.array([np.array([1, 1]), np.array([1, 1, 2])], dtype=object)  # ragged
    frame.at[2, "waferMap"] = np.array([1, 2, 1], np.uint8)  # 1-D
    grid_nan = disc(26, 26).astype(float)
    grid_nan[5, 5] = np.nan
    frame.at[3, "waferMap"] = grid_nan
    path = tmp_path / "bad.pkl"
    frame.to_pickle(path)
    result = parse_file(path)
    assert [(r.row, r.field) for r in result.rejects] == [("1", "waferMap"), ("2", "waferMap")]
    assert "ragged" in result.rejects[0].reason and "1-D" in result.rejects[1].reason
    assert len(result.records) == 2
    nan_rec = result.records[1]
    assert nan_rec.die_grid[5, 5] == DIE_INVALID  # kept for validation to reject with a reason


def test_truncated_pickle_and_wrong_columns_are_file_rejects(tmp_path):
    path = tmp_path / "LSWMD.pkl"
    lswmd_frame().to_pickle(path)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FileRejected, match="truncated or corrupt pickle"):
        parse_file(truncated)
    other = tmp_path / "other.pkl"
    pd.DataFrame({"a": [1]}).to_pickle(other)
    with pytest.raises(FileRejected, match=r"missing column\(s\) \['waferMap'"):
        parse_file(other)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(FileRejected, match="empty file"):
        parse_file(empty)


def test_npz_mixedwm38_layout(tmp_path):
    maps = np.stack([disc(52, 52, [(26, 26)]), disc(52, 52), disc(52, 52)])
    labels = np.zeros((3, 8), np.int32)
    labels[0, 0] = 1  # Center
    labels[2, [3, 6]] = 1  # Edge-Ring + Scratch: mixed
    path = tmp_path / "Wafer_Map_Datas.npz"
    np.savez(path, maps, labels)
    result = parse_file(path)
    assert [r.label for r in result.records] == ["Center", "none", None]
    assert result.records[2].attrs == {"labels": ["Edge-Ring", "Scratch"]}
    assert result.records[0].shape == (52, 52) and result.records[1].source_ref.endswith("#1")


def test_npz_index_and_string_labels_and_bad_rows(tmp_path):
    path = tmp_path / "maps.npz"
    np.savez(path, maps=np.stack([disc(20, 20)] * 3), labels=np.array([0, 7, 9]))
    result = parse_npz(path, NpzOptions())
    assert [r.label for r in result.records] == ["Center", "Random"]
    assert result.rejects[0].row == "2" and "outside" in result.rejects[0].reason
    path2 = tmp_path / "str.npz"
    np.savez(path2, maps=np.stack([disc(20, 20)] * 2), labels=np.array(["edge_ring", "Weird"]))
    assert [r.label for r in parse_npz(path2).records] == ["Edge-Ring", "Weird"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.ones(3))
    with pytest.raises(FileRejected, match="no maps array"):
        parse_file(bad)


class _Payload:
    """Unpickling this runs ``touch <marker>``: an npz must never get that far."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("key", ["maps", "labels"])
def test_npz_object_arrays_are_rejected_never_unpickled(tmp_path, key):
    marker = tmp_path / "PWNED"
    evil = np.array([_Payload(marker), disc(10, 10)], dtype=object)
    arrays = {"maps": evil} if key == "maps" else {"maps": np.stack([disc(10, 10)] * 2), "labels": evil}
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays)
    with pytest.raises(FileRejected, match="object array") as err:
        parse_file(path)
    assert err.value.field == key and "never unpickles" in str(err.value)
    assert not marker.exists()


CSV = """LOT;WAFER;DIE_X;DIE_Y;HBIN;label
A1;3;10;20;1;Loc
A1;3;11;20;7;Loc
A1;3;10;21;1;Loc
A1;3;12;22;1;Loc
A1;4;0;0;1;
A1;4;1;0;x;
A1;4;1;1;5;
A1;4;1;1;1;
"""


def test_csv_die_list_sniffed_with_synonyms(tmp_path):
    path = tmp_path / "dies.csv"
    path.write_text(CSV)
    result = parse_file(path)
    by_id = {r.wafer_id: r for r in result.records}
    assert by_id["3"].die_grid.tolist() == [[1, 2, 0], [1, 0, 0], [0, 0, 1]]
    assert by_id["3"].label == "Loc" and by_id["4"].label is None
    assert by_id["4"].die_grid.tolist() == [[1, 0], [0, 2]]
    reasons = [(r.row, r.field, r.reason) for r in result.rejects]
    assert ("7", "HBIN", "not an integer: 'x'") in reasons
    assert any(r[0] == "9" and "duplicate die" in r[2] for r in reasons)
    assert result.rejects[0].raw == "A1;4;1;0;x;"


def test_csv_flip_y_fail_bins_and_configured_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("l,w,c,r,b\nL,1,0,0,1\nL,1,0,1,3\nL,1,1,1,9\n")
    opts = CsvOptions(columns={"lot": "l", "wafer": "w", "x": "c", "y": "r", "bin": "b"}, fail_bins=(3,), flip_y=True)
    result = parse_csv(path, opts)
    assert result.records[0].die_grid.tolist() == [[2], [1]]  # y flipped; the bin-9 die rejected
    assert result.rejects[0].row == "4" and "neither" in result.rejects[0].reason


def test_csv_wrong_header_and_empty_file(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("lot,wafer,xx,yy,bin\nL,1,0,0,1\n")
    with pytest.raises(FileRejected, match=r"lacks column\(s\) \['x', 'y'\]"):
        parse_file(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(FileRejected, match="empty file"):
        parse_file(empty)


def test_csv_malformed_lines_are_rejected_one_by_one_and_the_rest_kept(tmp_path):
    path = tmp_path / "dies.csv"
    path.write_bytes(
        b"\xef\xbb\xbflot,wafer,x,y,bin\n"  # Excel's UTF-8 BOM
        b"L1,1,0,0,1\n"
        b'L1,1,1,0,"2\n'  # unbalanced quote
        b"L1,1,0,1,2,extra\n"  # one field too many
        b"L1;1;1;1;1\n"  # another delimiter
        b"L1,1,\xe9,1,1\n"  # latin-1, not UTF-8
        b"L1,1,1,1,2\n"
    )
    result = parse_file(path)
    assert [r.die_grid.tolist() for r in result.records] == [[[1, 0], [0, 2]]]
    reasons = {r.row: r.reason for r in result.rejects}
    assert set(reasons) == {"3", "4", "5", "6"}
    assert "malformed CSV line" in reasons["3"]
    assert reasons["4"].startswith("6 field(s), the header has 5")
    assert "looks ';'-separated" in reasons["5"]
    assert "not UTF-8" in reasons["6"] and "0xe9" in reasons["6"]
    assert result.rejects[0].raw == 'L1,1,1,0,"2'


def test_csv_huge_coordinates_reject_the_wafer_before_allocating_it(tmp_path):
    path = tmp_path / "dies.csv"
    path.write_text("lot,wafer,x,y,bin\nL1,1,0,0,1\nL1,1,10000000,0,2\nL2,1,0,0,1\nL2,1,1,0,2\n")
    result = parse_file(path)  # a 10**7-wide grid would be 10 TB of memory per row of dies
    assert [r.lot_id for r in result.records] == ["L2"]
    (reject,) = result.rejects
    assert reject.row == "2-3" and "exceeds the 2048-die limit" in reject.reason and "lines [2, 3]" in reject.reason


def test_csv_in_utf16_is_a_file_reject_that_names_the_encoding(tmp_path):
    path = tmp_path / "dies.csv"
    path.write_text("lot,wafer,x,y,bin\nL1,1,0,0,1\n", encoding="utf-16")
    with pytest.raises(FileRejected, match="UTF-16"):
        parse_file(path)


def test_png_grey_and_tiff_palette_with_label_from_folder(tmp_path):
    grid = disc(31, 27, [(15, 10), (16, 10)])
    folder = tmp_path / "Scratch"
    folder.mkdir()
    Image.fromarray(grid_to_grey(grid)).save(folder / "lot9_4.png")
    palette = np.array([[255, 255, 255], [183, 228, 167], [139, 0, 0]], np.uint8)
    Image.fromarray(palette[grid]).save(tmp_path / "lot9_5.tiff")
    png = parse_file(folder / "lot9_4.png").records[0]
    tif = parse_file(tmp_path / "lot9_5.tiff").records[0]
    assert np.array_equal(png.die_grid, grid) and np.array_equal(tif.die_grid, grid)
    assert (png.lot_id, png.wafer_id, png.label) == ("lot9", "4", "Scratch")
    assert tif.label is None


def test_image_with_colours_that_are_no_die_code_is_rejected(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[...] = (255, 255, 255)
    rgb[3, 4] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "x_1.png")
    with pytest.raises(FileRejected, match="row 3, column 4"):
        parse_file(tmp_path / "x_1.png")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(FileRejected, match="not a readable image"):
        parse_file(tmp_path / "fake.png")


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    """convert("L") clipped 32768 to 255: every pass die read as a fail (predicted Near-full)."""
    levels = np.full((20, 20), 32768, np.uint16)  # pass, on the 16-bit scale
    levels[0] = 0  # no die
    levels[5, 5] = 65535  # fail
    Image.fromarray(levels).save(tmp_path / "L_1.png")
    assert Image.open(tmp_path / "L_1.png").mode.startswith("I;16")
    grid = parse_file(tmp_path / "L_1.png").records[0].die_grid
    assert (grid[0] == 0).all() and grid[5, 5] == 2
    assert (grid == 1).sum() == 20 * 19 - 1


def test_oversized_and_bomb_images_are_file_rejects(tmp_path, monkeypatch):
    Image.new("1", (3000, 40)).save(tmp_path / "wide_1.png")
    with pytest.raises(FileRejected, match="3000 x 40 pixels.*2048-die limit"):
        parse_file(tmp_path / "wide_1.png")
    Image.new("L", (50, 50), 128).save(tmp_path / "bomb_1.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow raises past twice this
    with pytest.raises(FileRejected, match="DecompressionBombError"):
        parse_file(tmp_path / "bomb_1.png")


def test_canonical_parquet_bad_rows_are_rejected_and_good_rows_kept(tmp_path):
    """A negative height used to be 'repaired' by reshape(-1, w); a size mismatch sank the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from waferflow.data.records import WaferRecord, records_to_table

    recs = [WaferRecord(die_grid=disc(12, 10), lot_id="L", wafer_id=str(i)) for i in range(4)]
    table = records_to_table(recs).to_pydict()
    table["height"][1] = -1  # -1 x 10 would reshape to the 12 x 10 grid
    table["height"][2] = 13  # 130 dies expected, 120 bytes given
    table["attrs"][3] = "{not json"
    path = tmp_path / "canon.parquet"
    pq.write_table(pa.table(table), path)
    result = parse_file(path)
    assert [r.wafer_id for r in result.records] == ["0"]
    assert [(r.row, r.field) for r in result.rejects] == [("1", "height"), ("2", "die_grid"), ("3", "attrs")]
    assert "120 bytes for a 13 x 10 grid" in result.rejects[1].reason


def test_npz_that_is_no_zip_or_has_oversized_maps_is_rejected_with_the_right_reason(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip at all")
    with pytest.raises(FileRejected, match="not a zip archive") as err:
        parse_file(tmp_path / "garbage.npz")
    assert "pickle" not in err.value.reason
    np.savez(tmp_path / "wide.npz", arr_0=np.zeros((1, 3, 3000), np.uint8))
    with pytest.raises(FileRejected, match=r"\(1, 3, 3000\).*2048-die limit"):
        parse_file(tmp_path / "wide.npz")
