"""Label import: good rows merged with provenance, bad rows quarantined with reasons, re-import
idempotent, stored labels never overwritten; the split stage's overlay gives labels to wafers."""

import json
from datetime import datetime, timezone

import pandas as pd
import pytest

from waferflow.active.labels import STORE_NAME, apply_labels, import_labels, normalise_label, read_store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def queue(tmp_path):
    q = pd.DataFrame(
        {
            "wafer_id": ["L1:1", "L1:2", "L2:7", "L3:4"],
            "lot_id": ["L1", "L1", "L2", "L3"],
            "slot": ["1", "2", "7", "4"],
            "round": [1, 1, 1, 1],
        }
    )
    path = tmp_path / "queue.parquet"
    q.to_parquet(path)
    return path


def _csv(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_label_names_are_normalised():
    assert normalise_label("edge_loc") == "Edge-Loc" and normalise_label(" NEAR full") == "Near-full"
    assert normalise_label("none") == "none" and normalise_label("scratchy") is None


def test_import_merges_good_rows_and_quarantines_bad_ones_with_reasons(tmp_path, queue):
    labels, quarantine = tmp_path / "labels", tmp_path / "quarantine"
    src = _csv(
        tmp_path,
        "round1.csv",
        "wafer_id,label,annotator\n"
        "L1:1,Center,alice\n"  # line 2 ok
        "L1:2,edge ring,\n"  # line 3 ok, label normalised, default annotator
        "L9:9,Loc,alice\n"  # line 4 not in the queue
        "L2:7,Bullseye,bob\n"  # line 5 unknown class
        "L3:4,Loc,bob\n"  # line 6 conflicts with line 7
        "L3:4,Scratch,carol\n"  # line 7
        "L1:1,Center,alice\n",
    )  # line 8 same label repeated: harmless
    before = src.read_bytes()
    report = import_labels(src, queue, labels, quarantine, annotator="dave", now=NOW)
    assert (report.accepted, report.unchanged, len(report.rejects)) == (2, 1, 4)
    store = read_store(labels)
    assert store[["lot_id", "wafer_id", "label", "annotator", "round"]].values.tolist() == [
        ["L1", "1", "Center", "alice", 1],
        ["L1", "2", "Edge-Ring", "dave", 1],
    ]
    assert store["source_line"].tolist() == [2, 3] and store["imported_at"].iloc[0] == "2026-11-23T12:00:00+00:00"
    rejects = pd.read_csv(report.quarantine)
    by_line = {int(r.row): (r.field, r.reason) for r in rejects.itertuples()}
    assert by_line[4] == ("wafer_id", "'L9:9' is not in the annotation queue (round 1)")
    assert by_line[5][0] == "label" and by_line[5][1].startswith("unknown class 'Bullseye'")
    assert "conflicting labels ['Loc', 'Scratch'] for L3:4 in this file (lines 6, 7)" in by_line[6][1]
    assert set(rejects["stage"]) == {"label_import"} and json.loads(rejects["raw"].iloc[0])["wafer_id"]
    assert src.read_bytes() == before  # the annotator's file is never touched
    assert "2 label(s) accepted" in report.summary() and "REJECTED" in report.summary()


def test_reimport_is_idempotent_and_contradictions_are_not_overwritten(tmp_path, queue):
    labels, quarantine = tmp_path / "labels", tmp_path / "quarantine"
    src = _csv(tmp_path, "a.csv", "wafer_id,label\nL1:1,Center\nL2:7,none\n,\n")
    first = import_labels(src, queue, labels, quarantine, annotator="alice", now=NOW)
    stored = (labels / STORE_NAME).read_bytes()
    again = import_labels(src, queue, labels, quarantine, annotator="alice", now=NOW)
    assert (first.accepted, again.accepted, again.unchanged, len(again.rejects)) == (2, 0, 2, 0)
    assert (labels / STORE_NAME).read_bytes() == stored and again.quarantine is None
    other = _csv(tmp_path, "b.csv", "lot_id,wafer_id,label\nL1,1,Donut\nL3,4,Scratch\n")  # lot + slot form
    third = import_labels(other, queue, labels, quarantine, annotator="bob", now=NOW)
    assert third.accepted == 1 and len(third.rejects) == 1
    assert "L1:1 already labeled 'Center' (round 1, by alice); not overwritten" in third.rejects[0].reason
    assert read_store(labels).set_index("wafer_id").loc["1", "label"] == "Center"
    assert first.skipped_empty == 1


def test_unusable_files_fail_with_the_file_and_column(tmp_path, queue):
    with pytest.raises(ValueError, match=r"bad.csv: missing column\(s\) \['label'\]"):
        import_labels(_csv(tmp_path, "bad.csv", "wafer_id,class\nL1:1,Center\n"), queue, tmp_path / "l", tmp_path / "q")
    with pytest.raises(FileNotFoundError, match="no annotation queue"):
        import_labels(
            _csv(tmp_path, "ok.csv", "wafer_id,label\n"), tmp_path / "none.parquet", tmp_path / "l", tmp_path / "q"
        )


def test_split_overlay_labels_unlabeled_wafers_with_provenance(tmp_path, queue):
    labels = tmp_path / "labels"
    import_labels(
        _csv(tmp_path, "a.csv", "wafer_id,label\nL1:1,Scratch\nL1:2,Loc\nL2:7,Donut\n"),
        queue,
        labels,
        tmp_path / "q",
        annotator="alice",
        now=NOW,
    )
    frame = pd.DataFrame(
        {
            "lot_id": ["L1", "L1", "L5"],
            "wafer_id": ["1", "2", "1"],
            "label": [None, "Center", None],
            "attrs": ['{"true_label": "Scratch"}', "{}", None],
        }
    )
    out, counts = apply_labels(frame, labels)
    assert out["label"].tolist() == ["Scratch", "Center", None]
    assert counts == {"stored": 3, "applied": 1, "source_already_labeled": 1, "not_found": 1}
    attrs = json.loads(out["attrs"].iloc[0])
    assert attrs["true_label"] == "Scratch" and attrs["label_provenance"]["annotator"] == "alice"
    assert frame["label"].tolist() == [None, "Center", None]  # the input frame is not modified
    same, none = apply_labels(frame, tmp_path / "no_labels_yet")
    assert same is frame and none["applied"] == 0


@pytest.mark.parametrize(
    "encoding, text",
    [
        ("utf-8-sig", "wafer_id;label;annotator\r\nL1:1;Center;José\r\nL1:2;Loc;bob\r\n"),  # Excel "CSV UTF-8"
        ("utf-16", "wafer_id\tlabel\tannotator\r\nL1:1\tCenter\tJosé\r\nL1:2\tLoc\tbob\r\n"),  # Excel "Unicode text"
    ],
    ids=["csv-utf-8", "utf-16"],
)
def test_files_with_a_byte_order_mark_are_read(tmp_path, queue, encoding, text):
    report = import_labels(_csv(tmp_path, "excel.csv", text, encoding), queue, tmp_path / "l", tmp_path / "q", now=NOW)
    assert (report.accepted, report.rejects) == (2, [])
    assert read_store(tmp_path / "l")[["label", "annotator"]].values.tolist() == [["Center", "José"], ["Loc", "bob"]]


@pytest.mark.parametrize(
    "encoding, message",
    [
        ("latin-1", r"latin-1\.csv: not UTF-8 \(byte 0xe9 at offset \d+, line 3\); save it as \"CSV UTF-8\""),
        ("utf-16-le", r"utf-16-le\.csv: not a text CSV \(NUL characters: UTF-16 without a byte-order mark"),
    ],
)
def test_a_file_that_is_not_utf8_is_refused_with_how_to_fix_it(tmp_path, queue, encoding, message):
    src = _csv(tmp_path, f"{encoding}.csv", "wafer_id,label,annotator\nL1:1,Center,alice\nL1:2,Loc,José\n", encoding)
    with pytest.raises(ValueError, match=message):
        import_labels(src, queue, tmp_path / "l", tmp_path / "q", now=NOW)
    assert not (tmp_path / "l" / STORE_NAME).exists()


def test_missing_trailing_fields_are_empty(tmp_path, queue):
    src = _csv(tmp_path, "short.csv", "wafer_id,label,annotator\nL1:1,Center\nL1:2,Loc,bob\n")
    report = import_labels(src, queue, tmp_path / "l", tmp_path / "q", annotator="dave", now=NOW)
    assert (report.accepted, report.rejects) == (2, [])
    assert read_store(tmp_path / "l")["annotator"].tolist() == ["dave", "bob"]


def test_a_malformed_line_is_quarantined_and_the_rest_of_the_file_kept(tmp_path, queue):
    src = _csv(
        tmp_path,
        "broken.csv",
        "wafer_id,label,annotator\n"
        "L1:1,Center,alice\n"  # line 2 ok
        'L1:2,"Loc,bob\n'  # line 3 quote never closed
        "L2:7,Donut,bob,extra\n"  # line 4 one field too many
        '"L3:4",Scratch,"carol"\n',
    )  # line 5 ok, quoted fields
    report = import_labels(src, queue, tmp_path / "l", tmp_path / "q", now=NOW)
    assert report.accepted == 2 and read_store(tmp_path / "l")["wafer_id"].tolist() == ["1", "4"]
    rejects = pd.read_csv(report.quarantine, keep_default_na=False)
    by_line = {int(r.row): r for r in rejects.itertuples()}
    assert sorted(by_line) == [3, 4] and set(rejects["file"]) == {str(src)}
    assert "unbalanced quote" in by_line[3].reason and json.loads(by_line[3].raw) == 'L1:2,"Loc,bob'
    assert by_line[4].reason == "4 field(s), the header has 3"


def test_a_line_in_another_delimiter_is_rejected_not_read_as_unlabeled(tmp_path, queue):
    src = _csv(tmp_path, "mixed.csv", "wafer_id,label,annotator\nL1:1,Center,ann\nL1:2;Donut;ann\n")
    report = import_labels(src, queue, tmp_path / "labels", tmp_path / "q", now=NOW)
    assert (report.accepted, report.skipped_empty) == (1, 0)
    (reject,) = report.rejects
    assert reject.row == "3" and "looks ';'-separated, the header ','-separated" in reject.reason
