"""Prediction outputs: JSON lines and CSV written whole, one overlay PNG per wafer under a safe, distinct name."""

import csv
import json

import numpy as np
import pytest

from tests.conftest import disc
from waferflow.data.records import WaferRecord
from waferflow.inference import report
from waferflow.inference.report import write_predictions


def predicted(ids: list[tuple[str, str]]) -> tuple[list[dict], dict]:
    """Results as ``InferenceEngine.predict`` gives them (the keys the report reads), and their records."""
    results, records = [], {}
    for lot, wafer in ids:
        grid = disc(12, 14, fails=[(6, 7)])
        results.append(
            {
                "lot_id": lot,
                "wafer_id": wafer,
                "class": "Center",
                "confidence": 0.91,
                "top_k": [{"class": "Center", "probability": 0.91}, {"class": "Donut", "probability": 0.05}],
                "shape": list(grid.shape),
                "mask": (grid == 2).astype(np.uint8),
                "defects": {
                    "severity": 0.2,
                    "fail_density": 0.01,
                    "affected_dies": 1,
                    "clusters": [{}],
                    "edge_ratio": 0.0,
                },
                "model_version": "7",
            }
        )
        records[(lot, wafer)] = WaferRecord(die_grid=grid, lot_id=lot, wafer_id=wafer)
    return results, records


def overlay_files(out) -> list[str]:
    return sorted(p.name for p in (out / "overlays").iterdir())


def recorded_overlays(out) -> list[str]:
    """The overlay of each wafer as predictions.csv names it (checked against predictions.jsonl)."""
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["overlay"] for r in rows] == [line["overlay"] or "" for line in lines]
    return [r["overlay"] for r in rows]


def test_ids_that_sanitise_alike_get_distinct_overlays_and_plain_ids_keep_plain_names(tmp_path):
    write_predictions(*predicted([("a/b", "1"), ("a_b", "1"), ("a", "b_1"), ("LOT7", "3")]), tmp_path, overlays=True)
    files = overlay_files(tmp_path)
    assert len(files) == 4 and "LOT7_3.png" in files
    assert sorted(name.removeprefix("overlays/") for name in recorded_overlays(tmp_path)) == files


def test_leading_dots_make_no_hidden_overlay(tmp_path):
    write_predictions(*predicted([("..hidden", "1"), (".", ".")]), tmp_path, overlays=True)
    files = overlay_files(tmp_path)
    assert len(files) == 2 and not any(name.startswith(".") for name in files)
    assert any(name.startswith("hidden_1") for name in files)


def test_a_very_long_lot_id_gets_a_short_overlay_name(tmp_path):
    long_lot = "L" * 300
    write_predictions(*predicted([(long_lot, "1"), (long_lot + "x", "1")]), tmp_path, overlays=True)
    files = overlay_files(tmp_path)
    assert len(files) == 2 and all(len(name.encode()) <= 255 for name in files)
    assert all((tmp_path / name).is_file() for name in recorded_overlays(tmp_path))


def test_an_overlay_that_fails_is_reported_and_the_others_are_written(tmp_path, monkeypatch, caplog):
    draw = report.plot_wafer

    def broken_for_lot_b(ax, die_grid, mask, title):
        if title.startswith("B/"):
            raise ValueError("cannot draw this one")
        draw(ax, die_grid, mask, title)

    monkeypatch.setattr(report, "plot_wafer", broken_for_lot_b)
    write_predictions(*predicted([("A", "1"), ("B", "2"), ("C", "3")]), tmp_path, overlays=True)
    assert overlay_files(tmp_path) == ["A_1.png", "C_3.png"]
    assert recorded_overlays(tmp_path) == ["overlays/A_1.png", "", "overlays/C_3.png"]
    assert "B/2" in caplog.text and "cannot draw this one" in caplog.text


def test_without_overlays_the_table_has_no_overlay_column(tmp_path):
    write_predictions(*predicted([("A", "1")]), tmp_path)
    assert next(csv.reader((tmp_path / "predictions.csv").open())) == report.CSV_COLUMNS
    assert "overlay" not in json.loads((tmp_path / "predictions.jsonl").read_text())
    assert not (tmp_path / "overlays").exists()


def test_a_run_that_fails_mid_write_leaves_the_previous_predictions_whole(tmp_path, monkeypatch):
    write_predictions(*predicted([("A", "1"), ("A", "2")]), tmp_path)
    before = {name: (tmp_path / name).read_text() for name in ("predictions.jsonl", "predictions.csv")}
    calls = []

    def fails_on_the_second_wafer(result):
        calls.append(result)
        if len(calls) == 2:
            raise RuntimeError("killed mid-write")
        return {**result, "mask": result["mask"].tolist()}

    monkeypatch.setattr(report, "to_json", fails_on_the_second_wafer)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_predictions(*predicted([("B", "1"), ("B", "2")]), tmp_path)
    assert {name: (tmp_path / name).read_text() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no temp file left behind
