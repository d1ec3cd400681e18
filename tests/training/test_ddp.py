"""Distributed by configuration only: 1 epoch with strategy=ddp on 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_ddp_two_cpu_processes_train_and_checkpoint(tiny_project, tmp_path):
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["train"].update({"strategy": "ddp", "devices": 2, "accelerator": "cpu"})
    # Every encoder stage in use (depth 5): plain DDP requires all parameters to get gradients.
    params["model"].update({"encoder_depth": 5, "decoder_channels": [32, 16, 8, 8, 8]})
    params["mlflow"] = {"tracking_uri": f"sqlite:///{tmp_path / 'ddp.db'}", "artifact_root": str(tmp_path / "art")}
    params_path = tmp_path / "ddp_params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "waferflow.cli", "train", "--params", str(params_path)],
        cwd=tiny_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    info = json.loads((tiny_project / "models" / "train_run.json").read_text())
    assert info["world_size"] == 2 and info["global_rank"] == 0
    assert (tiny_project / info["checkpoint"]).stat().st_size > 1_000_000
    import torch

    ckpt = torch.load(tiny_project / info["checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and "state_dict" in ckpt
