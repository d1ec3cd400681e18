"""Shadow deployment: the champion answers at once, the challenger is logged beside it."""

import threading

import pytest

from tests.conftest import disc
from waferflow.inference.prediction_log import PredictionLog
from waferflow.monitoring.shadow import ShadowEngine, shadow_report


class FakeEngine:
    """Predicts a fixed class per wafer id and logs like the real engine."""

    def __init__(self, version, alias, classes, plog, gate=None):
        self.version, self.alias, self.classes, self.plog, self.gate = version, alias, classes, plog, gate

    def predict(self, wafers, **kwargs):
        if self.gate is not None:
            assert self.gate.wait(10), "the test never released the challenger"
        if self.classes == "boom":
            raise RuntimeError("challenger crashed")
        results = [
            {
                "lot_id": "L",
                "wafer_id": str(i),
                "model_version": self.version,
                "class": self.classes[i],
                "confidence": 0.9,
            }
            for i in range(len(wafers))
        ]
        self.plog.append(results, list(wafers), alias=self.alias, latency_ms=2.0)
        return results


def test_the_caller_gets_the_champion_without_waiting_for_the_challenger(tmp_path):
    plog = PredictionLog(tmp_path / "log")
    release = threading.Event()
    champion = FakeEngine("3", "champion", ["Center", "Donut", "none"], plog)
    challenger = FakeEngine("4", "challenger", ["Center", "Loc", "none"], plog, gate=release)
    wafers = [disc(12, 12)] * 3
    with ShadowEngine(champion, challenger, max_pending=1) as shadow:
        answer = shadow.predict(wafers)  # returns while the challenger is still blocked
        assert [r["class"] for r in answer] == ["Center", "Donut", "none"]
        assert {r["model_version"] for r in answer} == {"3"} and shadow.shadowed == 0
        shadow.predict(wafers)  # the one slot is taken: this shadow copy is dropped, not queued
        assert shadow.dropped == 1
        release.set()
    assert shadow.shadowed == 1 and shadow.failed == 0
    report = shadow_report(plog.read(days=1), labels={("L", "1"): "Loc", ("L", "2"): "none"})
    assert report["wafers"] == 3 and report["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["disagreements"] == {"Donut -> Loc": 1}
    assert report["champion"]["model_version"] == "3" and report["challenger"]["model_version"] == "4"
    assert report["champion"]["latency_ms_p95"] == 2.0
    assert report["labeled"] == {"wafers": 2, "champion_accuracy": 0.5, "challenger_accuracy": 1.0}


def test_a_failing_challenger_never_reaches_the_caller(tmp_path):
    plog = PredictionLog(tmp_path / "log")
    with ShadowEngine(
        FakeEngine("3", "champion", ["none"], plog), FakeEngine("4", "challenger", "boom", plog)
    ) as shadow:
        assert shadow.predict([disc(10, 10)])[0]["class"] == "none"
    assert shadow.failed == 1
    with pytest.raises(ValueError, match="both the champion and the challenger"):
        shadow_report(plog.read(days=1))


def test_shadow_cli_names_the_missing_alias(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from waferflow.cli import app
    from waferflow.data.records import write_records
    from waferflow.monitoring.scenarios import stream

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    write_records(stream("unshifted", 5, seed=1), tmp_path / "w.parquet")
    (tmp_path / "params.yaml").write_text(f"drift: {{prediction_log: '{tmp_path / 'log'}'}}\n")
    done = CliRunner().invoke(
        app,
        [
            "shadow",
            str(tmp_path / "w.parquet"),
            "--params",
            str(tmp_path / "params.yaml"),
            "--out",
            str(tmp_path / "shadow.json"),
        ],
    )
    assert done.exit_code == 1 and "@champion" in done.output and not (tmp_path / "shadow.json").exists()
