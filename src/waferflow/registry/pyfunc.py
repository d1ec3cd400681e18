"""The registered model: an MLflow pyfunc over a :class:`~waferflow.models.predictor.WaferPredictor`
and the pattern trees (and density CNN) of the patterns stage — the served class, as the engine serves it.

Input: ``uint8`` die grids ``(N, H, W)`` at the model's input size (0 no die, 1 pass, 2 fail);
optional params ``heights`` and ``widths``, one per wafer: each wafer's own shape before it was
resized (the pattern features are taken at that size; without them, at the given size).
Output: ``{"class_probs": (N, 9) float32, "unet_probs": (N, 9) float32, "mask": (N, H, W) uint8}``
— the served class probabilities (the U-Net's calibrated ones blended with the trees' and, when
the patterns stage fitted it, the density CNN's, as in ``waferflow predict`` and the ONNX engine;
the U-Net's alone for a version registered without trees), the U-Net's own, and its fail-die mask.

Example:
    >>> model = mlflow.pyfunc.load_model("models:/waferflow-wafer-classifier@champion")  # doctest: +SKIP
    >>> own_shapes = {"heights": [41, 52], "widths": [44, 52]}
    >>> model.predict(grids, params=own_shapes)["class_probs"].argmax(1)  # doctest: +SKIP
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

__all__ = [
    "WaferPyfunc",
    "save_weights",
    "load_weights",
    "load_initial_weights",
    "pip_requirements",
    "wafer_shapes",
    "PATTERNS_ARTIFACT",
]

PATTERNS_ARTIFACT = (
    "patterns"  # the patterns stage's folder (trees.onnx, density.onnx, patterns.json) in the logged model
)


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


def wafer_shapes(params: dict | None, n: int) -> list[tuple[int, int]] | None:
    """The wafers' own shapes from the pyfunc's ``heights`` and ``widths`` params (None when
    neither is given: the grids' own size)."""
    heights, widths = (list((params or {}).get(key) or []) for key in ("heights", "widths"))
    if not heights and not widths:
        return None
    if len(heights) != n or len(widths) != n:
        raise ValueError(f"params heights and widths: one per wafer ({n} wafers), got {len(heights)} and {len(widths)}")
    shapes = [(int(h), int(w)) for h, w in zip(heights, widths)]
    if any(min(shape) < 1 for shape in shapes):
        raise ValueError(f"params heights and widths: every wafer's shape is at least 1x1, got {min(shapes)}")
    return shapes


class WaferPyfunc(mlflow.pyfunc.PythonModel):
    """The registered version: the U-Net (``weights``) and, when logged with them, the pattern
    trees and density CNN (``patterns``) blended into the class as the engine does."""

    def load_context(self, context) -> None:
        from waferflow.patterns.trees import PatternClassifier

        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.predictor = load_weights(context.artifacts["weights"])
        folder = context.artifacts.get(PATTERNS_ARTIFACT)
        self.patterns = PatternClassifier.from_dir(folder) if folder else None

    def predict(self, context, model_input, params=None):
        grids = np.asarray(model_input)
        if grids.ndim == 2:
            grids = grids[None]
        unet, masks = self.predictor.predict(grids)
        probs = unet if self.patterns is None else self.patterns.blend(unet, grids, wafer_shapes(params, len(grids)))
        return {"class_probs": probs, "unet_probs": unet, "mask": masks}


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
        "onnx",
        "onnxruntime",
        "tqdm",
    )
    return [f"{p}=={version(p)}" for p in pkgs]
