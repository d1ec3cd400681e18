"""Where each stage reads and writes (the paths ``dvc.yaml`` declares), relative to a project root.

Example:
    >>> from waferflow.layout import Layout
    >>> Layout("/srv/fab").processed.as_posix()
    '/srv/fab/data/processed'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Layout", "RUN_RECORD"]

RUN_RECORD = "airflow_run.json"  #: what the retrain DAG's prepare task records in a run's workspace


@dataclass(frozen=True)
class Layout:
    """Where each stage reads and writes, relative to the project root (as in ``dvc.yaml``)."""

    root: Path = Path(".")

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    @property
    def generated(self) -> Path:
        return self / "data/generated"

    @property
    def ingested(self) -> Path:
        return self / "data/interim/ingested.parquet"

    @property
    def validated(self) -> Path:
        return self / "data/interim/validated.parquet"

    @property
    def processed(self) -> Path:
        return self / "data/processed"

    @property
    def quarantine(self) -> Path:
        return self / "data/quarantine"

    @property
    def reports(self) -> Path:
        return self / "reports"

    @property
    def figures(self) -> Path:
        return self / "reports/figures"

    @property
    def metrics(self) -> Path:
        return self / "metrics"

    @property
    def models(self) -> Path:
        return self / "models"

    @property
    def export(self) -> Path:
        return self / "export"

    @property
    def augmented(self) -> Path:
        return self / "data/augmented"

    @property
    def synthetic(self) -> Path:
        return self / "data/augmented/synthetic.parquet"

    @property
    def al_queue(self) -> Path:
        return self / "data/al/queue"

    @property
    def monitoring(self) -> Path:
        return self / "data/monitoring"

    def train_run(self) -> dict:
        """What the train stage recorded: run id, registered version, weights path ..."""
        return json.loads((self.models / "train_run.json").read_text())

    def run_context(self) -> dict[str, str]:
        """Which orchestrated run this is, why, and the project commit it copied, as MLflow tags: the
        retrain DAG's prepare task writes ``airflow_run.json`` into the run's workspace (a git
        repository of its own). Empty outside such a run."""
        try:
            record = json.loads((self / RUN_RECORD).read_text())
        except (OSError, ValueError):
            return {}
        tags = {
            "airflow_run_id": record.get("run_id"),
            "retrain_reason": record.get("reason"),
            "git_commit": record.get("git_commit"),
        }
        return {k: str(v)[:5000] for k, v in tags.items() if v}

    def resolve(self, path: str | Path) -> Path:
        """A path from params.yaml: absolute as given, relative to the project root otherwise."""
        return Path(path) if Path(path).is_absolute() else self.root / path
