"""End to end: `dvc repro` on a fresh copy of the project, then again (nothing to do), then
with a corrupt user file dropped into data/raw (quarantined, the rest goes on)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _run(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
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
    _run(["git", "init", "-q"], dest)
    return dest


def test_dvc_repro_runs_the_data_stages_then_has_nothing_to_do(project):
    out = _run(["dvc", "repro"], project)
    for stage in ("generate", "ingest", "validate", "split"):
        assert f"Running stage '{stage}'" in out
    split = json.loads((project / "metrics/split.json").read_text())
    assert split["test"]["total"] == 900 and split["unlabeled"]["total"] == 2000
    assert split["train"]["total"] + split["val"]["total"] == 2700
    for rel in ("reports/figures/generated_gallery.png", "reports/figures/split_gallery.png",
                "reports/validation/validation.html", "reports/ingest.json", "data/processed/train.parquet"):
        assert (project / rel).stat().st_size > 0, rel
    again = _run(["dvc", "repro"], project)
    assert "Running stage" not in again
    assert "up to date" in _run(["dvc", "status"], project)


def test_corrupt_user_file_is_quarantined_and_the_pipeline_goes_on(project):
    bad = project / "data/raw/broken_LSWMD.pkl"
    bad.write_bytes(b"\x80\x04\x95 truncated")
    out = _run(["dvc", "repro"], project)
    assert "Running stage 'ingest'" in out and "REJECTED" in out
    rejects = pd.read_csv(project / "data/quarantine/ingest/rejects.csv")
    assert rejects["file"].str.endswith("broken_LSWMD.pkl").any()
    assert bad.read_bytes() == b"\x80\x04\x95 truncated"
