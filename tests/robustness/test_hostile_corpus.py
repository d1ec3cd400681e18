"""A folder of good wafer files plus one of each file that used to crash, run code or corrupt.

Through `waferflow ingest`, `waferflow predict` and `waferflow label import`: no traceback, every good wafer comes out,
every bad file or row is named with a reason, no code from a file runs, sources are unchanged.
"""

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import disc
from tests.data.test_parsers import lswmd_frame
from tests.inference.test_engine import exported  # noqa: F401 - the module's exported-model fixture
from waferflow.cli import app
from waferflow.data.parsers.image import grid_to_grey
from waferflow.data.records import WaferRecord, read_records, records_to_table

runner = CliRunner()


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _die_list(lot: str, wafer: str, grid: np.ndarray) -> list[str]:
    return [f"{lot},{wafer},{x},{y},{1 if grid[y, x] == 1 else 9}" for y, x in np.argwhere(grid > 0)]


def build_corpus(folder: Path, marker: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """Write the corpus; returns the (lot, wafer) keys that must come out and the bad file names."""
    folder.mkdir()
    good: set[tuple[str, str]] = set()
    frame = lswmd_frame()
    frame.to_pickle(folder / "LSWMD.pkl")
    good |= {(lot, str(int(w))) for lot, w in zip(frame["lotName"], frame["waferIndex"])}

    long_lot = "L" * 300  # overlay file name too long
    lines = [
        "lot,wafer,x,y,bin",
        *_die_list("a/b", "1", disc(12, 12, [(6, 6)])),
        *_die_list("a_b", "1", disc(12, 12, [(3, 6)])),
        *_die_list(long_lot, "2", disc(10, 14, [(5, 5)])),
        *_die_list("..hidden", "3", disc(11, 11, [(5, 4)])),
        'a/b,9,0,0,"1',
        "a/b,9,0,0,1,extra",
        "a/b;9;1;1;1",
    ]  # unbalanced quote, extra field, delimiter
    (folder / "dies.csv").write_text("\n".join(lines) + "\n")
    good |= {("a/b", "1"), ("a_b", "1"), (long_lot, "2"), ("..hidden", "3")}
    (folder / "huge.csv").write_text(
        "lot,wafer,x,y,bin\nH1,1,0,0,1\nH1,1,10000000,0,1\n"
        + "\n".join(_die_list("H2", "1", disc(9, 9, [(4, 4)])))
        + "\n"
    )
    good.add(("H2", "1"))

    Image.fromarray(grid_to_grey(disc(21, 23, [(10, 10), (10, 11)]))).save(folder / "img_1.png")
    sixteen = (disc(15, 15, [(7, 7)]).astype(np.uint16) * 32768).clip(0, 65535)
    Image.fromarray(sixteen).save(folder / "img16_1.png")
    good |= {("img", "1"), ("img16", "1")}

    recs = [WaferRecord(die_grid=disc(12, 10, [(5, 5)]), lot_id="P", wafer_id=str(i)) for i in range(2)]
    table = records_to_table(recs).to_pydict()
    table["height"][1] = -1
    pq.write_table(pa.table(table), folder / "rows.parquet")
    good.add(("P", "0"))

    bad = {"evil.pkl", "evil_cell.pkl", "evil.npz", "notzip.npz", "bomb_1.png", "torn.parquet", "loop.csv"}
    (folder / "evil.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    cell = lswmd_frame().astype({"waferMap": object})
    cell.at[0, "waferMap"] = _RunsCode(marker)
    (folder / "evil_cell.pkl").write_bytes(pickle.dumps(cell))
    np.savez(folder / "evil.npz", arr_0=np.array([_RunsCode(marker)], dtype=object))
    (folder / "notzip.npz").write_bytes(b"PK? no, garbage")
    Image.new("1", (3000, 3000)).save(folder / "bomb_1.png")
    (folder / "torn.parquet").write_bytes((folder / "rows.parquet").read_bytes()[:40])
    os.symlink("loop.csv", folder / "loop.csv")
    return good, bad


def _fingerprints(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if not p.is_symlink()}


def test_ingest_and_predict_survive_the_hostile_corpus(exported, tmp_path):  # noqa: F811
    marker = tmp_path / "PWNED"
    inbox = tmp_path / "inbox"
    good, bad = build_corpus(inbox, marker)
    before = _fingerprints(inbox)
    files = sorted(inbox.iterdir())

    out = tmp_path / "out" / "table.parquet"
    ingested = runner.invoke(app, ["ingest", *map(str, files), "--out", str(out)])
    assert ingested.exit_code == 0, ingested.output
    assert ingested.exception is None and "Traceback" not in ingested.output
    assert {(r.lot_id, r.wafer_id) for r in read_records(out)} == good
    rejects = pd.read_csv(out.with_name("table.quarantine") / "rejects.csv", dtype=str)
    rejected_files = {Path(f).name for f in rejects.loc[rejects["row"].isna(), "file"]}
    assert rejected_files == bad
    assert rejects["reason"].notna().all() and (rejects["reason"].str.len() > 10).all()
    row_rejects = rejects[rejects["row"].notna()]
    assert set(row_rejects["file"].map(lambda f: Path(f).name)) == {"dies.csv", "huge.csv", "rows.parquet"}

    model = exported[1] / "model.onnx"
    predicted = runner.invoke(
        app,
        [
            "predict",
            *map(str, files),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "pred"),
            "--overlay",
            "--prediction-log",
            "off",
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    assert predicted.exception is None and "Traceback" not in predicted.output
    jsonl = pd.read_json(tmp_path / "pred" / "predictions.jsonl", lines=True, dtype={"wafer_id": str})
    assert set(zip(jsonl["lot_id"], jsonl["wafer_id"])) == good
    overlays = sorted(p.name for p in (tmp_path / "pred" / "overlays").iterdir())
    assert len(overlays) == len(good) and not any(name.startswith(".") for name in overlays)
    assert all(len(name.encode()) <= 255 for name in overlays)
    for name in bad:
        assert name in predicted.output  # each skipped file named on stderr

    assert not marker.exists()
    assert _fingerprints(inbox) == before


def test_label_import_survives_hostile_label_files(tmp_path, monkeypatch):
    """Excel's BOM, a short row, a broken quote, an extra field: the good labels land, the bad lines are named;
    a latin-1 or binary file is refused with the reason and nothing is stored."""
    from tests.conftest import PROJECT_ROOT

    monkeypatch.chdir(tmp_path)
    queue = tmp_path / "queue.parquet"
    pd.DataFrame(
        {
            "wafer_id": ["L1:1", "L1:2", "L2:7", "L3:4"],
            "lot_id": ["L1", "L1", "L2", "L3"],
            "slot": ["1", "2", "7", "4"],
            "round": [1] * 4,
        }
    ).to_parquet(queue)
    files = {
        "excel.csv": "\ufeffwafer_id,label,annotator\r\nL1:1,Center,ann\r\nL1:2,Donut\r\n"  # short row: no annotator
        'L2:7,"Loc,ann\r\nL3:4,Scratch,ann,extra\r\n'.encode("utf-8"),
        "latin1.csv": "wafer_id,label,annotator\nL2:7,Loc,José\n".encode("latin-1"),
        "binary.csv": bytes(range(256)),
    }
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    params = ["--params", str(PROJECT_ROOT / "params.yaml"), "--queue", str(queue)]
    excel = runner.invoke(app, ["label", "import", "excel.csv", *params])
    assert excel.exit_code == 0, excel.output
    assert "2 label(s) accepted" in excel.output and "2 rejected" in excel.output
    store = pd.read_parquet(tmp_path / "data/labels/al_labels.parquet")
    assert sorted(zip(store["lot_id"], store["wafer_id"], store["label"])) == [
        ("L1", "1", "Center"),
        ("L1", "2", "Donut"),
    ]
    (quarantined,) = (tmp_path / "data/quarantine/labels").iterdir()
    assert sorted(pd.read_csv(quarantined)["row"]) == [4, 5]
    for name in ("latin1.csv", "binary.csv"):
        refused = runner.invoke(app, ["label", "import", name, *params])
        assert refused.exit_code == 1 and name in refused.output and isinstance(refused.exception, SystemExit)
    assert len(pd.read_parquet(tmp_path / "data/labels/al_labels.parquet")) == 2
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
