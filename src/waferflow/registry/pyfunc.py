"""The registered model: an MLflow pyfunc over WaferUNet weights.

Input: ``uint8`` die grids ``(N, H, W)`` at the model's input size (0 no die, 1 pass, 2 fail).
Output: ``{"class_probs": (N, 9) float32, "mask": (N, H, W) uint8}``; the mask is restricted
to fail dies, as defect masks are by definition.

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

from waferflow.classes import DIE_FAIL
from waferflow.fileio import atomic_path
from waferflow.models.encoding import encode_grids
from waferflow.models.config import ModelConfig
from waferflow.models.wafer_unet import WaferUNet

__all__ = ["WaferPyfunc", "save_weights", "load_weights", "predict_grids", "pip_requirements"]


def save_weights(net: WaferUNet, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save({"model_config": net.config.model_dump(), "state_dict": net.state_dict()}, tmp)
    return Path(path)


def load_weights(path: str | Path) -> WaferUNet:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    net = WaferUNet(ModelConfig.model_validate(blob["model_config"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval()


@torch.no_grad()
def predict_grids(net: WaferUNet, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, 9) and fail-die masks (N, H, W) for resized die grids."""
    grids = np.asarray(grids, dtype=np.uint8)
    probs, masks = [], []
    net.eval()
    device = next(net.parameters()).device
    for start in range(0, len(grids), batch_size):
        chunk = grids[start:start + batch_size]
        mask_logits, class_logits = net(encode_grids(chunk).to(device))
        probs.append(torch.softmax(class_logits, 1).float().cpu().numpy())
        mask = mask_logits.argmax(1).cpu().numpy().astype(np.uint8)
        mask[chunk != DIE_FAIL] = 0
        masks.append(mask)
    return np.concatenate(probs), np.concatenate(masks)


class WaferPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.net = load_weights(context.artifacts["weights"])

    def predict(self, context, model_input, params=None):
        grids = np.asarray(model_input)
        if grids.ndim == 2:
            grids = grids[None]
        probs, masks = predict_grids(self.net, grids)
        return {"class_probs": probs, "mask": masks}


def pip_requirements() -> list[str]:
    pkgs = ("torch", "segmentation-models-pytorch", "timm", "numpy", "pydantic", "mlflow", "scikit-image",
            "pandas", "pyarrow", "scipy")
    return [f"{p}=={version(p)}" for p in pkgs]
