"""Where the class head looked: class-activation maps of a wafer's predicted class.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017) and Grad-CAM++ (Chattopadhay et al., WACV 2018), computed by the
``grad-cam`` library (pytorch-grad-cam) on an encoder stage of the class path for the class the
model predicts (or one asked for). The map is brought back to the
wafer's own die grid (bilinear, then zero where there is no die), so it overlays the map the
engineer looks at.

Example:
    >>> import numpy as np
    >>> from waferflow.models.config import ModelConfig
    >>> from waferflow.models.predictor import WaferPredictor
    >>> from waferflow.models.wafer_unet import WaferUNet
    >>> predictor = WaferPredictor(WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8))))
    >>> grid = np.ones((20, 24), np.uint8); grid[5, 5:9] = 2
    >>> cams, classes = class_activation_maps(predictor, [grid], input_size=(32, 32))
    >>> cams[0].shape, bool(0 <= cams[0].min() and cams[0].max() <= 1)
    ((20, 24), True)
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from skimage.transform import resize
from torch import nn

from waferflow.data.resize import resize_grid
from waferflow.models.encoding import encode_grids
from waferflow.models.predictor import WaferPredictor

__all__ = ["class_activation_maps", "CamMethod", "ClassHead"]

CamMethod = Literal["gradcam", "gradcam++"]


class ClassHead(nn.Module):
    """The predictor's class path alone, ``x -> class logits``, with the last encoder stage's
    output passing through ``features`` (an identity) so a CAM library can hook it."""

    def __init__(self, predictor: WaferPredictor) -> None:
        super().__init__()
        unet = predictor.net.net
        self.encoder, self.head = unet.encoder, unet.classification_head
        self.features = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.encoder(x)[-1]))

    def stage(self, back: int) -> nn.Module:
        """The module whose output is the encoder stage ``back`` stages before the last (0: the
        pooled one). Earlier stages see the wafer at a finer grid (the last one is 1/32 of the
        input: 2 x 2 cells at 64 x 64), at the price of less class-specific evidence."""
        if back == 0:
            return self.features
        depth = self.encoder._depth
        name = f"layer{depth - 1 - back}"  # ResNet-family encoders: stage k (k >= 2) is layer{k-1}
        if not hasattr(self.encoder, name) or depth - 1 - back < 1:
            raise ValueError(f"cam stage {back} back: the {type(self.encoder).__name__} has no {name}")
        return getattr(self.encoder, name)


def on_die_grid(heat: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A map in [0, 1] at the model input size brought back to ``grid``'s own shape, 0 off the wafer."""
    back = resize(heat, grid.shape, order=1, mode="edge", anti_aliasing=False)
    return np.where(grid > 0, np.clip(back, 0, 1), 0).astype(np.float32)


def class_activation_maps(
    predictor: WaferPredictor,
    grids: Sequence[np.ndarray],
    input_size: tuple[int, int],
    method: CamMethod = "gradcam",
    classes: Sequence[int] | None = None,
    batch_size: int = 64,
    stage: int = 2,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per wafer a map in [0, 1] on its own die grid (0 off the wafer) for ``classes`` (default:
    the predicted class), and the class indexes explained. ``input_size``: the grid size the model
    takes (``preprocess.image_size``; the engine's ``input_size``); ``stage``: :meth:`ClassHead.stage`,
    at most the earliest the encoder has. The default, 2 stages before the pooled one (8 x 8 cells
    at 64 x 64), was chosen on the real *dev* lots by the deletion check (``benchmarks/explain.py``):
    it ranks the fail dies that carry the class far better than the coarse last stage."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    predictor = predictor.eval()
    model = ClassHead(predictor).eval()
    cam_type = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}[method]
    maps, explained = [], []
    stage = min(stage, max(0, model.encoder._depth - 2))
    with cam_type(model=model, target_layers=[model.stage(stage)]) as cam:
        for start in range(0, len(grids), batch_size):
            chunk = [np.asarray(g) for g in grids[start : start + batch_size]]
            x = encode_grids(np.stack([resize_grid(g, input_size) for g in chunk]))
            if classes is None:
                with torch.no_grad():
                    wanted = model(x).argmax(1).tolist()
            else:
                wanted = [int(c) for c in classes[start : start + len(chunk)]]
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in wanted])
            maps += [on_die_grid(h, grid) for grid, h in zip(chunk, heat)]
            explained += wanted
    return maps, np.asarray(explained, dtype=np.int64)
