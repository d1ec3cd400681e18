"""MLflow tracking setup and run provenance (params, git commit, DVC data version).

The embedded default keeps everything inside the project: a SQLite store ``mlflow.db`` and an
artifact root ``mlruns/`` (both git-ignored), so nothing needs to be running.
``MLFLOW_TRACKING_URI`` (read once, here) points a team at its server instead.

Example:
    >>> flatten({"train": {"lr": 0.002, "augment": {"flips": True}}})
    {'train.lr': 0.002, 'train.augment.flips': True}
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

__all__ = ["MlflowConfig", "configure_mlflow", "flatten", "log_run", "log_params_record", "git_commit", "data_version"]


class MlflowConfig(BaseModel):
    """``mlflow`` in ``params.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_root: str = "mlruns"
    experiment: str = "waferflow"
    registered_model: str = "waferflow-wafer-classifier"


def resolved_tracking_uri(cfg: MlflowConfig, root: Path) -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str((root / uri[len("sqlite:///") :]).resolve())
    return uri


def configure_mlflow(cfg: MlflowConfig, root: Path = Path(".")) -> str:
    """Point MLflow (tracking and registry) at the configured store; create the experiment
    with its artifact root inside the project. Returns the experiment id."""
    import mlflow

    uri = resolved_tracking_uri(cfg, root)
    team_server = uri == os.environ.get("MLFLOW_TRACKING_URI")  # read before MLflow exports its own URI there
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        return experiment.experiment_id
    if uri.startswith("sqlite:///"):  # a local store keeps its artifacts beside it, wherever the process runs
        location = (Path(uri[len("sqlite:///") :]).parent / cfg.artifact_root).resolve().as_uri()
    else:
        location = None if team_server else (root / cfg.artifact_root).resolve().as_uri()
    return mlflow.create_experiment(cfg.experiment, artifact_location=location)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params -> ``{"section.key": value}`` for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def log_run(
    name: str, cfg: MlflowConfig, root: Path, metrics: dict[str, float], tags: dict[str, Any], files: list[Path]
) -> str:
    """A finished MLflow run ``name`` in the configured experiment with ``metrics``, ``tags`` and
    ``files`` as artifacts; returns its id."""
    import mlflow

    experiment = configure_mlflow(cfg, root)
    with mlflow.start_run(run_name=name, experiment_id=experiment) as run:
        mlflow.log_metrics(metrics)
        mlflow.set_tags({k: str(v)[:5000] for k, v in tags.items()})
        for f in files:
            mlflow.log_artifact(str(f))
    return run.info.run_id


def log_params_record(params: BaseModel) -> None:
    """Log every parameter in force (``params.yaml`` with its defaults filled in) to the active
    MLflow run, for the record."""
    import mlflow

    values = flatten(params.model_dump(mode="json", by_alias=True))
    mlflow.log_params({k: str(v)[:6000] for k, v in values.items()})


def git_commit(root: Path = Path(".")) -> str:
    """The checked-out commit (``-dirty`` when tracked files changed), or ``unknown``. (A retrain
    DAG run works in a copy of the checkout; its run record names the project's commit, which
    :meth:`waferflow.layout.Layout.run_context` hands to the train stage.)"""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_version(data_dir: Path, root: Path = Path(".")) -> str:
    """DVC's hash of the split outputs (from ``dvc.lock``), else a SHA-256 of the files."""
    lock = root / "dvc.lock"
    rel = os.path.relpath(data_dir.resolve(), root.resolve())
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if out.get("path") == rel and out.get("md5"):
                    return f"dvc:{out['md5']}"
    digest = hashlib.sha256()
    for f in sorted(data_dir.glob("*.parquet")):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return f"sha256:{digest.hexdigest()[:32]}"
