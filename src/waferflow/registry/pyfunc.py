"""The registered model: an MLflow pyfunc over a :class:`~waferflow.models.predictor.WaferPredictor`.

Input: ``uint8`` die grids ``(N, H, W)`` at the model's input size (0 no die, 1 pass, 2 fail).
Output: ``{"class_probs": (N, 9) float32, "mask": (N, H, W) uint8}`` — the predictor's calibrated
probabilities and fail-die mask, the same numbers the ONNX export and ``waferflow predict`` give.

Example:
    >>> model = mlflow.pyfunc.load_model("models:/waferflow-wafer-classifier@champion")  # doctest: +SKIP
    >>> model.predict(grids)["class_probs"].argmax(1)  # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import torch

from waferflow.fileio import atomic_path
from waferflow.models.config import ModelConfig
from waferflow.models.predictor import WaferPredictor, as_predictor
from waferflow.models.wafer_unet import WaferUNet

__all__ = ["WaferPyfunc", "save_weights", "load_weights", "load_initial_weights", "pip_requirements"]


def save_weights(model: WaferUNet | WaferPredictor, path: str | Path) -> Path:
    """The net's config and weights and the predictor's temperature, in one torch file."""
    predictor = as_predictor(model)
    blob = {
        "model_config": predictor.config.model_dump(),
        "state_dict": predictor.net.state_dict(),
        "temperature": float(predictor.temperature),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def load_weights(path: str | Path) -> WaferPredictor:
    """The predictor saved by :func:`save_weights` (files from before calibration moved into the
    model have no temperature: 1)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    net = WaferUNet(ModelConfig.model_validate(blob["model_config"]))
    net.load_state_dict(blob["state_dict"])
    return WaferPredictor(net, blob.get("temperature", 1.0)).eval()


def load_initial_weights(source: str, root: Path = Path(".")) -> tuple[WaferPredictor, str]:
    """The predictor ``train.init_from`` names — a ``weights.pt`` file (relative to ``root``) or a
    registered ``models:/<name>@<alias>`` / ``models:/<name>/<version>`` — and what it resolved to
    (the file, or the model URI with its version), for the run's tags."""
    if source.startswith("models:/"):
        from mlflow import MlflowClient

        name, _, ref = source[len("models:/") :].partition("@")
        client = MlflowClient()
        if ref:
            version = client.get_model_version_by_alias(name, ref).version
        else:
            name, _, version = source[len("models:/") :].rpartition("/")
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}")
        return load_weights(Path(local) / "artifacts" / "weights.pt"), f"models:/{name}/{version}"
    path = Path(source) if Path(source).is_absolute() else root / source
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: {path} is not a file (a weights.pt, or models:/<name>@<alias>)")
    return load_weights(path), str(path)


class WaferPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.predictor = load_weights(context.artifacts["weights"])

    def predict(self, context, model_input, params=None):
        grids = np.asarray(model_input)
        if grids.ndim == 2:
            grids = grids[None]
        probs, masks = self.predictor.predict(grids)
        return {"class_probs": probs, "mask": masks}


def pip_requirements() -> list[str]:
    pkgs = (
        "torch",
        "segmentation-models-pytorch",
        "timm",
        "numpy",
        "pydantic",
        "mlflow",
        "scikit-image",
        "pandas",
        "pyarrow",
        "scipy",
    )
    return [f"{p}=={version(p)}" for p in pkgs]
