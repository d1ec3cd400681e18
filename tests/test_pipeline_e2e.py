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
    for stage in ("generate", "ingest", "validate", "split", "train", "evaluate", "export", "gate"):
        assert f"Running stage '{stage}'" in out
    split = json.loads((project / "metrics/split.json").read_text())
    assert split["test"]["total"] == 180 and split["unlabeled"]["total"] == 100
    assert split["train"]["total"] + split["val"]["total"] == 540
    assert json.loads((project / "metrics/train.json").read_text())["alias"] == "champion"
    gate = json.loads((project / "metrics/gate.json").read_text())
    assert gate["decision"] == "champion" and gate["aliases"] == {"champion": gate["challenger_version"]}
    assert 0 <= json.loads((project / "metrics/evaluate.json").read_text())["test_macro_f1"] <= 1
    for rel in ("reports/figures/generated_gallery.png", "reports/figures/split_gallery.png",
                "reports/validation/validation.html", "reports/ingest.json", "data/processed/train.parquet",
                "models/weights.pt", "reports/evaluation/confusion_matrix.png", "mlflow.db", "export/model.onnx"):
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
