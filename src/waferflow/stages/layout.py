"""Where each stage reads and writes (the paths ``dvc.yaml`` declares)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from waferflow import fileio

__all__ = ["Layout", "write_json"]


@dataclass(frozen=True)
class Layout:
    """Where each stage reads and writes, relative to the project root (as in ``dvc.yaml``)."""

    root: Path = Path(".")

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    @property
    def generated(self) -> Path: return self / "data/generated"
    @property
    def ingested(self) -> Path: return self / "data/interim/ingested.parquet"
    @property
    def validated(self) -> Path: return self / "data/interim/validated.parquet"
    @property
    def processed(self) -> Path: return self / "data/processed"
    @property
    def quarantine(self) -> Path: return self / "data/quarantine"
    @property
    def reports(self) -> Path: return self / "reports"
    @property
    def figures(self) -> Path: return self / "reports/figures"
    @property
    def metrics(self) -> Path: return self / "metrics"
    @property
    def models(self) -> Path: return self / "models"
    @property
    def export(self) -> Path: return self / "export"

    def train_run(self) -> dict:
        """What the train stage recorded: run id, registered version, weights path ..."""
        return json.loads((self.models / "train_run.json").read_text())

    def resolve(self, path: str | Path) -> Path:
        """A path from params.yaml: absolute as given, relative to the project root otherwise."""
        return Path(path) if Path(path).is_absolute() else self.root / path


def write_json(path: Path, payload: dict) -> None:
    fileio.write_json(path, payload)


