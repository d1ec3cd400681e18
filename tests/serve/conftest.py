"""The served test project: a copy of ``monitored_project`` (champion and challenger registered,
tiny U-Nets exported to ONNX) per test, and the service over it on loopback."""

import shutil

import httpx
import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import own_mlflow_store
from waferflow.serve.app import create_app, running


def set_params(root, section, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.setdefault(section, {}).update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def versions(project) -> dict:
    return {k: str(v) for k, v in MlflowClient().get_registered_model("monitor-test-model").aliases.items()}


@pytest.fixture
def project(monitored_project, tmp_path, monkeypatch):
    """A copy: promotions, labels and the prediction log stay in it."""
    root = tmp_path / "project"
    shutil.copytree(monitored_project, root, ignore=shutil.ignore_patterns("prediction_log", "metrics"))
    set_params(root, "drift", prediction_log=str(tmp_path / "log"))
    own_mlflow_store(monkeypatch)
    return root


@pytest.fixture
def served(project):
    app = create_app(project / "params.yaml", poll=False)
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield app, client


@pytest.fixture
def queued(project):
    """``project`` with an annotation queue of 6 wafers, written by the al_query stage's own code."""
    from waferflow.active.query import build_queue
    from waferflow.config import load_params
    from waferflow.layout import Layout
    from waferflow.models.predictor import as_predictor
    from waferflow.training.lightning_module import WaferLitModule

    p, layout = load_params(project / "params.yaml"), Layout(project)
    net = WaferLitModule.load_from_checkpoint(layout.models / "best.ckpt", map_location="cpu").net.eval()
    build_queue(
        as_predictor(net),
        layout.processed / "unlabeled.parquet",
        [layout.processed / "train.parquet", layout.processed / "val.parquet"],
        p.al.model_copy(update={"budget": 6, "strategy": "entropy"}),
        layout.al_queue,
        layout.resolve(p.al.labels_dir),
        progress=False,
    )
    return project
