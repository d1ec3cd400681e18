"""End to end on a fab's own files: labeled maps in WM-811K's LSWMD.pkl layout and an STDF V4
wafer sort file dropped into ``data/raw`` beside the generated maps. ``dvc repro`` reads both
formats (the STDF file's package-test wafer quarantined, its wafer sort maps kept as unlabeled),
splits lot-disjoint with the fab's own test lots held out, scores each source apart, and a second
training is gated on each source apart."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import copy_project, run_ok
from tests.data.test_stdf import CROSS, PASSED, stdf_file, wafer
from waferflow.synth import DatasetConfig, generate_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # two dvc repro runs: ~10 min alone on 2 cores


def lswmd_pickle(path, per_class: int = 12, wafers_per_lot: int = 3) -> int:
    """Labeled maps laid out as WM-811K's LSWMD.pkl (nested labels, no masks, no test hint)."""
    sets = generate_dataset(DatasetConfig(seed=11, labeled_per_class=per_class, unlabeled_count=0, test_per_class=0))
    records = sets["labeled"]
    frame = pd.DataFrame(
        {
            "waferMap": [r.die_grid.astype(np.uint8) for r in records],
            "dieSize": [1683.0] * len(records),
            "lotName": [f"fablot{i // wafers_per_lot}" for i in range(len(records))],
            "waferIndex": [float(i % wafers_per_lot + 1) for i in range(len(records))],
            "trianTestLabel": [np.zeros((0, 0))] * len(records),
            "failureType": [np.array([[r.label]], dtype=object) for r in records],
        }
    ).sample(frac=1, random_state=0)  # lots of mixed classes, as a fab's are
    frame.to_pickle(path)
    return len(frame)


def test_a_fabs_lswmd_and_stdf_files_are_trained_on_scored_and_gated_per_source(tmp_path):
    project = copy_project(tmp_path / "project")
    fab = project / "data/raw/fab"
    fab.mkdir(parents=True)
    labeled = lswmd_pickle(fab / "LSWMD.pkl")
    stdf_file(fab / "sort.stdf", wafer("W01", CROSS), wafer("W02", [(-32768, 0, PASSED, 1, 1)]))
    run_ok(["dvc", "repro"], project)

    ingest = json.loads((project / "reports/ingest.json").read_text())
    files = {name.rsplit("/", 1)[-1]: info for name, info in ingest["files"].items()}
    assert files["LSWMD.pkl"] == {"format": "lswmd", "records": labeled, "rejected": 0}
    assert files["sort.stdf"] == {"format": "stdf", "records": 1, "rejected": 1}
    with open(project / "data/quarantine/ingest/rejects.csv") as handle:
        rejects = [r for r in csv.DictReader(handle) if r["file"].endswith("sort.stdf")]
    assert [(r["row"], r["field"]) for r in rejects] == [("1", "X_COORD,Y_COORD")]

    split = json.loads((project / "metrics/split.json").read_text())
    assert split["lots_in_two_splits"] == 0 and split["test_by_source"]["lswmd"] > 0
    assert split["test_by_source"]["synth"] == 180  # the generator's own test set, untouched
    evaluate = json.loads((project / "metrics/evaluate.json").read_text())
    assert set(evaluate["per_source"]) == {"lswmd", "synth"}
    assert evaluate["per_source"]["lswmd"]["wafers"] == split["test_by_source"]["lswmd"]
    patterns = json.loads((project / "metrics/patterns.json").read_text())  # the fab's maps beside the own ones
    assert patterns["fitted_on_parts"]["training_split"] > 0 and patterns["fitted_on_parts"]["own_generated"] == 9 * 40

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["seed"] += 1  # a second version: the gate compares it with the first, per source
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_ok(["dvc", "repro"], project)
    gate = json.loads((project / "metrics/gate.json").read_text())
    rules = {r["rule"] for r in gate["rules"]}
    assert {"test/lswmd_macro_f1", "test/synth_macro_f1", "test/lswmd_class_recall"} <= rules, gate["reason"]
    assert "test_macro_f1" not in rules  # never the pooled figure
