"""End to end: `dvc repro` on a fresh copy of the project (generate -> ... -> evaluate), then
again (nothing to do), then with a corrupt user file dropped into data/raw (quarantined, the
rest goes on). The copy trains a smaller configuration so the test stays within minutes; the
default configuration's figures are measured by `make pipeline` and reported in the README."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _run(cmd, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dest = tmp_path_factory.mktemp("wf") / "project"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = PROJECT_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "dvc.lock").unlink(missing_ok=True)  # from scratch, as after a params change
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["synth"].update({"labeled_per_class": 60, "unlabeled_count": 100, "test_per_class": 20})
    params["model"].update({"encoder_depth": 3, "decoder_channels": [32, 16, 8]})
    params["train"].update({"max_epochs": 1, "batch_size": 32})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], dest)
    return dest


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
