"""Shared fixtures: small real inputs the tests build themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
import pytest

from waferflow.data.records import WaferRecord
from waferflow.synth import WaferGenerator

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def disc(rows: int, cols: int, fails: list[tuple[int, int]] = ()) -> np.ndarray:
    """A round wafer grid of pass dies with the given fail dies."""
    y, x = np.mgrid[:rows, :cols]
    inside = ((y + 0.5 - rows / 2) / (rows / 2)) ** 2 + ((x + 0.5 - cols / 2) / (cols / 2)) ** 2 <= 1
    grid = inside.astype(np.uint8)
    for r, c in fails:
        grid[r, c] = 2
    return grid


@pytest.fixture
def generator() -> WaferGenerator:
    return WaferGenerator(seed=11)


@pytest.fixture
def small_records(generator) -> list[WaferRecord]:
    from waferflow.classes import CLASSES

    recs = []
    for i, cls in enumerate(CLASSES * 3):
        rec = generator.make(cls, index=i, lot_id=f"L{i // 5}", wafer_id=str(i % 5 + 1))
        recs.append(rec)
    return recs


TINY_PARAMS = """
synth: {seed: 5, labeled_per_class: 40, unlabeled_count: 10, test_per_class: 10, n_products: 12,
        generator: {diameter_range: [20, 48]}}
preprocess: {image_size: [32, 32]}
split: {seed: 1, val_fraction: 0.2}
model: {encoder_name: resnet18, encoder_depth: 3, decoder_channels: [32, 16, 8]}
train: {max_epochs: 1, batch_size: 8, lr: 0.003, early_stopping_patience: 1, accelerator: cpu, use_synthetic: false}
evaluate: {real_data_dir: no_real_data_here, worst_errors: 4}
triage: {stages: [1, 3], probe_wafers: 20, review_novelty: 0.1, reject_novelty: 0.05}
patterns: {density_cnn: {seeds: 2, epochs: 2, width: 4}}
"""


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory):
    """A project root with tiny params and the split and patterns stages' outputs (32x32, 360
    labeled wafers; the train stage registers the pattern trees with the model)."""
    from waferflow.config import load_params
    from waferflow.layout import Layout
    from waferflow.stages import stage
    from waferflow.synth import generate_dataset

    root = tmp_path_factory.mktemp("tiny")
    (root / "params.yaml").write_text(TINY_PARAMS)
    params = load_params(root / "params.yaml")
    layout = Layout(root)
    sets = generate_dataset(params.synth)
    from waferflow.data.records import write_records

    write_records([r for recs in sets.values() for r in recs], layout.validated)
    stage("split").run(params, layout, progress=False)
    stage("patterns").run(params, layout, progress=False)
    return root


#: The small configuration the end-to-end tests train (the default one is measured by `make pipeline`).
E2E_PARAMS = {
    "synth": {
        "labeled_per_class": {
            "Center": 60,
            "Donut": 20,
            "Edge-Loc": 60,
            "Edge-Ring": 60,
            "Loc": 60,
            "Near-full": 60,
            "Random": 60,
            "Scratch": 60,
            "none": 60,
        },
        "unlabeled_count": 100,
        "test_per_class": 20,
    },
    # Donut is starved (17 training maps): the GAN runs, briefly
    "augment": {
        "min_count": 30,
        "target_count": 30,
        "gan_steps": 4,
        "reference_steps": 20,
        "batch_size": 16,
        "latent_dim": 16,
        "gen_width": 16,
        "critic_width": 8,
    },
    "model": {"encoder_depth": 3, "decoder_channels": [32, 16, 8]},
    "train": {"max_epochs": 1, "batch_size": 32},
    "triage": {"stages": [1, 3], "probe_wafers": 40},  # a 3-stage encoder
    "patterns": {"own_maps": {"per_class": 40}},  # the trees' own maps: about as many as the split's wafers
}


def run_ok(cmd, cwd, env: dict | None = None) -> str:
    """Run a command with the test interpreter's bin first on PATH; fail the test with its output."""
    full = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full["PATH"] = f"{Path(sys.executable).parent}:{full['PATH']}"
    full.update(env or {})
    done = subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def copy_project(dest: Path, updates: dict = E2E_PARAMS) -> Path:
    """The project's working tree copied to ``dest`` (a new git repo, no dvc.lock: from scratch),
    with ``updates`` merged into params.yaml sections."""
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = PROJECT_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in updates.items():
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_ok(["git", "init", "-q"], dest)
    return dest


def own_mlflow_store(mp: pytest.MonkeyPatch) -> None:
    """Unset ``MLFLOW_TRACKING_URI`` so that the params' store is used, and have ``mp`` restore the
    variable as it was: MLflow exports every URI it is given to the environment, and
    ``delenv`` alone records nothing to restore when the variable was unset."""
    mp.setenv("MLFLOW_TRACKING_URI", "")
    mp.delenv("MLFLOW_TRACKING_URI")


def register_exported(net, name: str, experiment_id: str, out_dir: Path, val, test, tag: str) -> str:
    """Register ``net`` under ``name`` with its ONNX export logged beside it, as the train and
    export stages do; returns the version (alias champion if none, else challenger)."""
    import mlflow

    from waferflow.inference.export import export_onnx
    from waferflow.models.predictor import as_predictor
    from waferflow.classes import CLASSES
    from waferflow.registry.register import log_and_register, tag_version
    from waferflow.triage.novelty import fit_triage

    with mlflow.start_run(experiment_id=experiment_id, run_name=tag) as run:
        pass
    info = log_and_register(as_predictor(net), name, run.info.run_id, {"kind": tag}, val.grids)
    out = out_dir / f"onnx-{info['version']}"
    # With the open-set triage, as the novelty and export stages make it (fitted on val and
    # calibrated on test here: the fixture has no other labeled wafers to spare).
    predictor = as_predictor(net).eval()
    head, triage = fit_triage(
        predictor,
        (val.grids, val.labels),
        (test.grids, test.labels),
        list(CLASSES),
        stages=(1, predictor.config.encoder_depth),
        review_novelty=0.05,
        reject_novelty=0.01,
    )
    report = export_onnx(
        net,
        out,
        val.grids,
        test.grids,
        test.labels,
        calibration_size=16,
        max_int8_f1_drop=1.0,
        novelty_head=head,
        triage=triage,
    )
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_artifacts(str(out), artifact_path="onnx")
    tag_version(name, info["version"], {"onnx_parity_passed": str(report["parity"]["passed"])})
    return info["version"]


@pytest.fixture(scope="session")
def monitored_project(tiny_project, tmp_path_factory):
    """A served project: params.yaml, the test split, a reference of 600 unshifted production
    wafers (data/interim/validated.parquet) and a registry (mlflow.db in the project) holding a
    champion and a challenger, tiny U-Nets exported to ONNX. Its prediction log starts empty."""
    from waferflow.config import load_params
    from waferflow.data.records import write_records
    from waferflow.monitoring.scenarios import stream
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.data.arrays import WaferArrays
    from waferflow.training.lightning_module import WaferLitModule
    from waferflow.training.trainer import fit

    root = tmp_path_factory.mktemp("monitored")
    params = yaml.safe_load(TINY_PARAMS)
    params.update(
        mlflow={"experiment": "monitor-test", "registered_model": "monitor-test-model"},
        drift={"window_days": 2},
        gate={"latency_runs": 20, "max_latency_ratio": 5.0},
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(tiny_project / "data/processed", root / "data/processed")
    p = load_params(root / "params.yaml")
    write_records(stream("unshifted", 600, seed=0, base=p.synth), root / "data/interim/validated.parquet")
    with pytest.MonkeyPatch.context() as mp:  # MLflow exports the URI to the environment: undo it after
        own_mlflow_store(mp)
        experiment = configure_mlflow(p.mlflow, root)
        data = root / "data/processed"
        val, test = WaferArrays.from_parquet(data / "val.parquet"), WaferArrays.from_parquet(data / "test.parquet")
        summary = fit(p.model, p.train.model_copy(update={"max_epochs": 2}), data, root / "models", p.mlflow, root)
        net = WaferLitModule.load_from_checkpoint(summary["checkpoint"], map_location="cpu").net.eval()
        for tag in ("champion", "challenger"):
            register_exported(net, p.mlflow.registered_model, experiment, root / "export", val, test, tag)
    return root
