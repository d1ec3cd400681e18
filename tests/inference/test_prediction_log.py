"""The append-only, day-partitioned prediction log: local and S3, never failing a prediction."""

import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.conftest import PROJECT_ROOT, disc
from waferflow.data.features import FEATURES
from waferflow.inference.prediction_log import LOG_COLUMNS, BufferedPredictionLog, PredictionLog, logged_grids

T0 = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)


def batch(n, cls="Center"):
    grids = [disc(12 + i, 15, fails=[(6, 7)]) for i in range(n)]
    results = [
        {"lot_id": "L1", "wafer_id": str(i), "model_version": "7", "class": cls, "confidence": 0.9} for i in range(n)
    ]
    return results, grids


def test_local_log_appends_one_file_per_batch_in_day_partitions_and_reads_a_window(tmp_path):
    plog = PredictionLog(tmp_path / "log")
    first = plog.append(*batch(3), alias="champion", when=T0)
    plog.append(*batch(2, "Donut"), alias="champion", when=T0 + timedelta(minutes=1))
    plog.append(*batch(4), alias="champion", when=T0 - timedelta(days=9))  # outside a 7-day window
    files = sorted((tmp_path / "log").rglob("*.parquet"))
    assert len(files) == 3 and {f.parent.name for f in files} == {"date=2026-11-20", "date=2026-11-11"}
    assert first.endswith(".parquet") and plog.written == 9 and plog.errors == 0
    window = plog.read(days=7, end=T0.date())
    assert list(window.columns) == list(LOG_COLUMNS) and len(window) == 5
    assert window["predicted_class"].tolist() == ["Center"] * 3 + ["Donut"] * 2
    assert (window["alias"] == "champion").all() and (window["n_dies"] > 0).all()
    assert set(FEATURES) <= set(window.columns)
    assert len(plog.read(days=30, end=T0.date())) == 9
    assert plog.read(days=1, end=(T0 + timedelta(days=3)).date()).empty


def test_the_log_keeps_each_wafers_die_grid_as_plain_bytes_and_old_parts_read_as_none(tmp_path):
    import numpy as np

    plog = PredictionLog(tmp_path / "log")
    results, grids = batch(3)
    grids[1] = grids[1][:, :-4]  # a non-square grid keeps its shape
    plog.append(results, grids, alias="champion", when=T0)
    window = plog.read(days=1, end=T0.date())
    back = logged_grids(window)
    assert [g.shape for g in back] == [g.shape for g in grids] and all(
        np.array_equal(a, b) for a, b in zip(back, grids)
    )
    assert window["die_grid"].map(type).eq(bytes).all()  # raw codes, no pickle
    torn = window.assign(grid_rows=window["grid_rows"] + 1)  # bytes that do not fill the shape
    assert logged_grids(torn) == [None] * 3
    assert logged_grids(window.drop(columns=["die_grid", "grid_rows", "grid_cols"])) == [None] * 3  # an older part


def test_a_failed_write_is_counted_and_reported_not_raised(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    plog = PredictionLog(blocker)
    assert plog.append(*batch(2), when=T0) is None
    assert plog.errors == 1 and plog.written == 0
    assert "could not write" in caplog.text and "not-a-folder" in caplog.text


def test_the_services_buffered_log_writes_one_part_per_flush_and_day_and_loses_nothing_on_close(tmp_path):
    plog = BufferedPredictionLog(tmp_path / "log", flush_seconds=3600)  # flushed by hand and on close
    for k in range(5):
        assert plog.append(*batch(2), alias="champion", when=T0 + timedelta(seconds=k)) is None
    plog.append(*batch(1, "Donut"), alias="challenger", when=T0 + timedelta(days=1))
    assert not list((tmp_path / "log").rglob("*.parquet"))  # nothing written per request
    parts = plog.flush()
    assert len(parts) == 2 and plog.written == 11 and plog.errors == 0  # one part per day
    plog.append(*batch(3), alias="champion", when=T0 + timedelta(minutes=5))
    plog.close()  # what is pending is written
    window = plog.read(days=7, end=(T0 + timedelta(days=1)).date())
    assert len(window) == 14 and window["predicted_class"].tolist().count("Donut") == 1
    assert window["logged_at"].is_monotonic_increasing and (window["n_dies"] > 0).all()
    plog.append(*batch(2), when=T0)  # after close: written at once
    assert plog.written == 16 and len(list((tmp_path / "log").rglob("*.parquet"))) == 4


def test_the_buffered_log_flushes_by_itself_and_counts_a_failed_flush(tmp_path, caplog):
    plog = BufferedPredictionLog(tmp_path / "log", flush_seconds=3600, max_rows=4)
    plog.append(*batch(5), when=T0)  # over max_rows: the flusher wakes up
    deadline = datetime.now() + timedelta(seconds=30)
    while plog.written < 5:
        assert datetime.now() < deadline, "the flusher did not write a full buffer"
        time.sleep(0.02)
    plog.close()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    broken = BufferedPredictionLog(blocker, flush_seconds=3600)
    broken.append(*batch(2), when=T0)
    broken.close()
    assert broken.errors == 1 and broken.written == 0 and "could not write" in caplog.text


def test_s3_log_round_trip(monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="fab-logs")
        plog = PredictionLog("s3://fab-logs/waferflow/predictions")
        assert plog.append(*batch(3), alias="champion", when=T0).startswith("s3://fab-logs/waferflow/predictions/date=")
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="fab-logs")["Contents"]]
        assert len(keys) == 1 and keys[0].startswith("waferflow/predictions/date=2026-11-20/part-")
        assert len(plog.read(days=1, end=T0.date())) == 3
        missing = PredictionLog("s3://no-such-bucket/x")
        assert missing.append(*batch(1), when=T0) is None and missing.errors == 1


def test_the_engine_logs_every_prediction_and_still_answers_when_logging_fails(exported, tmp_path):
    from waferflow.inference.engine import InferenceEngine

    _, out, _, _ = exported
    plog = PredictionLog(tmp_path / "log")
    engine = InferenceEngine.from_path(out / "model.onnx", prediction_log=plog)
    results = engine.predict([disc(20, 24, fails=[(10, 10)]), disc(33, 33)])
    logged = plog.read(days=1)
    assert len(logged) == 2 and logged["predicted_class"].tolist() == [r["class"] for r in results]
    assert logged["n_dies"].tolist() == [int((disc(20, 24) != 0).sum()), int((disc(33, 33) != 0).sum())]
    (tmp_path / "broken").write_text("")
    engine.prediction_log = broken = PredictionLog(tmp_path / "broken")
    assert len(engine.predict([disc(20, 24)])) == 1 and broken.errors == 1


@pytest.fixture(scope="module")
def exported(tiny_project, tmp_path_factory):
    from tests.inference.test_engine import exported as make

    return make.__wrapped__(tiny_project, tmp_path_factory)


def test_unreadable_parts_are_skipped_counted_and_reported(tmp_path, caplog):
    plog = PredictionLog(tmp_path / "log")
    good = Path(plog.append(*batch(3), alias="champion", when=T0))
    (good.parent / "part-torn.parquet").write_bytes(good.read_bytes()[:10])
    (good.parent / "part-empty.parquet").write_bytes(b"")
    (good.parent / "._part-copied-by-macos.parquet").write_bytes(b"\0\5")  # hidden: not a part
    window = plog.read(days=1, end=T0.date())
    assert len(window) == 3 and window["wafer_id"].tolist() == ["0", "1", "2"]
    assert sorted(Path(p).name for p in plog.skipped_parts) == ["part-empty.parquet", "part-torn.parquet"]
    assert "part-torn.parquet" in caplog.text and "part-empty.parquet" in caplog.text
    assert plog.read(days=1, end=(T0 + timedelta(days=3)).date()).empty and plog.skipped_parts == []


KILLED_MID_WRITE = """
import os, signal, sys
from datetime import datetime, timezone
from tests.inference.test_prediction_log import batch
from waferflow.inference import prediction_log

class HalfWritten:  # the writer is killed -9 half-way through the bytes of its part
    def __init__(self, fh):
        self.fh = fh
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.fh.close()
    def write(self, data):
        self.fh.write(data[:len(data) // 2])
        self.fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)

prediction_log.open = lambda *a, **k: HalfWritten(open(*a, **k))
prediction_log.PredictionLog(sys.argv[1]).append(*batch(2), when=datetime(2026, 11, 20, 9, tzinfo=timezone.utc))
"""


def test_a_writer_killed_mid_write_leaves_no_part_and_the_log_stays_readable(tmp_path):
    plog = PredictionLog(tmp_path / "log")
    plog.append(*batch(3), when=T0)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "log")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    day = tmp_path / "log" / "date=2026-11-20"
    assert len(list(day.glob("*.parquet"))) == 1  # the killed writer's bytes are in a temp file only
    assert len(plog.read(days=1, end=T0.date())) == 3 and plog.skipped_parts == []


def test_drift_reports_the_log_parts_it_skipped(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from waferflow.cli import app
    from waferflow.data.records import write_records
    from waferflow.monitoring.scenarios import stream

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_records(stream("unshifted", 100, seed=0), tmp_path / "reference.parquet")
    wafers = stream("unshifted", 60, seed=1)
    results = [
        {"lot_id": r.lot_id, "wafer_id": r.wafer_id, "model_version": "3", "class": "none", "confidence": 0.6}
        for r in wafers
    ]
    good = Path(PredictionLog(tmp_path / "log").append(results, [r.die_grid for r in wafers], alias="champion"))
    torn = good.with_name("part-torn.parquet")
    torn.write_bytes(good.read_bytes()[:10])
    (tmp_path / "params.yaml").write_text(f"drift: {{prediction_log: '{tmp_path / 'log'}', min_wafers: 50}}\n")
    done = CliRunner().invoke(
        app,
        [
            "drift",
            "--reference",
            str(tmp_path / "reference.parquet"),
            "--no-mlflow",
            "--out",
            str(tmp_path / "report"),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
    )
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "report/drift.json").read_text())
    assert summary["n_current"] == 60 and summary["skipped_log_parts"] == [str(torn)]
