"""The append-only, day-partitioned prediction log: local and S3, never failing a prediction."""

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from tests.conftest import disc
from waferflow.monitoring.features import FEATURES
from waferflow.monitoring.prediction_log import LOG_COLUMNS, PredictionLog

T0 = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)


def batch(n, cls="Center"):
    grids = [disc(12 + i, 15, fails=[(6, 7)]) for i in range(n)]
    results = [{"lot_id": "L1", "wafer_id": str(i), "model_version": "7", "class": cls, "confidence": 0.9}
               for i in range(n)]
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


def test_a_failed_write_is_counted_and_reported_not_raised(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    plog = PredictionLog(blocker)
    assert plog.append(*batch(2), when=T0) is None
    assert plog.errors == 1 and plog.written == 0
    assert "could not write" in caplog.text and "not-a-folder" in caplog.text


def test_s3_log_round_trip(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
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
