"""End to end: `dvc repro` on a fresh copy of the project (generate -> ... -> evaluate), then
again (nothing to do), then with a corrupt user file dropped into data/raw (quarantined, the
rest goes on). The copy trains a smaller configuration so the test stays within minutes; the
default configuration's figures are measured by `make pipeline` and reported in the README."""

import json

import pandas as pd
import pytest

from tests.conftest import copy_project, run_ok as _run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("wf") / "project")


def test_dvc_repro_runs_the_data_stages_then_has_nothing_to_do(project):
    out = _run(["dvc", "repro"], project)
    for stage in (
        "generate",
        "ingest",
        "validate",
        "split",
        "augment",
        "train",
        "patterns",
        "evaluate",
        "al_query",
        "index",
        "export",
        "gate",
    ):
        assert f"Running stage '{stage}'" in out
    split = json.loads((project / "metrics/split.json").read_text())
    assert split["test"]["total"] == 180 and split["unlabeled"]["total"] == 100
    assert split["train"]["total"] + split["val"]["total"] == 500
    augment = json.loads((project / "metrics/augment.json").read_text())
    assert list(augment["classes"]) == ["Donut"] and augment["classes"]["Donut"]["generated"] > 0
    assert json.loads((project / "metrics/train.json").read_text())["alias"] == "champion"
    patterns = json.loads((project / "metrics/patterns.json").read_text())  # own maps, no split wafer: all generated
    assert patterns["fitted_on_parts"] == {"training_split": 0, "own_generated": 9 * 40}
    gate = json.loads((project / "metrics/gate.json").read_text())
    assert gate["decision"] == "champion" and gate["aliases"] == {"champion": gate["challenger_version"]}
    assert 0 <= json.loads((project / "metrics/evaluate.json").read_text())["test_macro_f1"] <= 1
    for rel in (
        "reports/figures/generated_gallery.png",
        "reports/figures/split_gallery.png",
        "reports/validation/validation.html",
        "reports/ingest.json",
        "data/processed/train.parquet",
        "models/weights.pt",
        "reports/evaluation/confusion_matrix.png",
        "mlflow.db",
        "export/model.onnx",
        "export/patterns.onnx",
        "export/density.onnx",
        "data/patterns/trees.onnx",
        "data/patterns/density.onnx",
        "data/al/queue/queue.csv",
        "data/al/queue/overview.png",
        "data/index/embeddings.npy",
    ):
        assert (project / rel).stat().st_size > 0, rel
    again = _run(["dvc", "repro"], project)
    assert "Running stage" not in again
    assert "up to date" in _run(["dvc", "status"], project)


def test_corrupt_user_file_is_quarantined_and_the_pipeline_goes_on(project):
    bad = project / "data/raw/broken_LSWMD.pkl"
    bad.write_bytes(b"\x80\x04\x95 truncated")
    out = _run(["dvc", "repro"], project)
    assert "Running stage 'ingest'" in out and "REJECTED" in out
    assert "Running stage 'train'" not in out  # same valid data after quarantine: no retraining
    rejects = pd.read_csv(project / "data/quarantine/ingest/rejects.csv")
    assert rejects["file"].str.endswith("broken_LSWMD.pkl").any()
    assert bad.read_bytes() == b"\x80\x04\x95 truncated"


def test_annotator_labels_round_trip_into_the_next_training(project):
    queue = pd.read_csv(project / "data/al/queue/queue.csv", keep_default_na=False)
    assert len(queue) == 100 and json.loads((project / "metrics/al_query.json").read_text())["round"] == 1
    truth = pd.read_parquet(project / "data/processed/unlabeled.parquet")
    true_label = {
        f"{lot}:{w}": json.loads(a)["true_label"]
        for lot, w, a in zip(truth["lot_id"], truth["wafer_id"], truth["attrs"])
    }
    filled = queue.head(6).assign(label=lambda q: q["wafer_id"].map(true_label), annotator="e2e")
    filled.loc[5, "label"] = "Bullseye"  # one bad row: quarantined, the rest goes in
    (project / "labels_round1.csv").write_text(filled[["wafer_id", "label", "annotator"]].to_csv(index=False))
    out = _run(["waferflow", "label", "import", "labels_round1.csv"], project)
    assert "5 label(s) accepted" in out and "unknown class 'Bullseye'" in out
    again = _run(["waferflow", "label", "import", "labels_round1.csv"], project)
    assert "0 label(s) accepted" in again and "5 already known" in again
    out = _run(["dvc", "repro"], project)
    assert "Running stage 'split'" in out and "Running stage 'train'" in out  # the enlarged pool retrains
    split = json.loads((project / "metrics/split.json").read_text())
    assert split["annotator_labels"]["applied"] == 5 and split["unlabeled"]["total"] == 95
    assert split["train"]["total"] + split["val"]["total"] == 505
    assert json.loads((project / "metrics/al_query.json").read_text())["round"] == 2
