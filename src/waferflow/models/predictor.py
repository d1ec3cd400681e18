"""The served model: a WaferUNet plus everything from encoded die grids to calibrated outputs.

``WaferPredictor.forward(x)`` takes the encoded input ``(N, 2, H, W)`` (see
:mod:`waferflow.models.encoding`) and returns

* ``class_probs`` ``(N, 9)``: ``softmax(class_logits / temperature)``, the temperature fitted on
  the validation split after training (temperature scaling: Guo et al., "On Calibration of
  Modern Neural Networks", ICML 2017), so confidences are calibrated;
* ``mask`` ``(N, H, W)`` uint8: the mask head's class per die (0 = background, 1..8 = pattern),
  on fail dies only, as defect masks are by definition;
* ``class_logits`` ``(N, 9)``: the raw class head, for calibration and parity checks.

This one module is what the ONNX export holds, what the registered MLflow pyfunc runs, and what
evaluation, active-learning scoring and the GAN's reference classifier call, so a model version
gives the same class and confidence whichever way it is asked (as anomalib puts pre- and
post-processing inside the exported module).

Example:
    >>> import numpy as np
    >>> from waferflow.models.config import ModelConfig
    >>> predictor = WaferPredictor(WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8))))
    >>> probs, masks = predictor.predict(np.ones((2, 32, 32), np.uint8))
    >>> probs.shape, masks.shape
    ((2, 9), (2, 32, 32))
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

from waferflow.models.encoding import encode_grids
from waferflow.models.wafer_unet import WaferUNet

__all__ = ["WaferPredictor", "as_predictor", "fit_temperature"]


def fit_temperature(class_logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) on labeled wafers (Guo et al., 2017)."""

    def nll(t: float) -> float:
        return float(-log_softmax(class_logits / t, axis=1)[np.arange(len(labels)), labels].mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


class WaferPredictor(nn.Module):
    """``net`` with its calibration temperature and post-processing; see the module doc."""

    def __init__(self, net: WaferUNet, temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    @property
    def config(self):
        return self.net.config

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_features(x)[1:]

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's feature list (for the novelty head: one encoder pass serves all), then
        :meth:`forward`'s outputs."""
        unet = self.net.net
        if not torch.jit.is_tracing():
            unet.check_input_shape(x)
        features = unet.encoder(x)
        mask_logits = unet.segmentation_head(unet.decoder(features))
        class_logits = unet.classification_head(features[-1])
        class_probs = torch.softmax(class_logits / self.temperature, dim=1)
        fail = x[:, 1] > 0.5  # input channel 1: the fail dies
        mask = torch.where(fail, mask_logits.argmax(1), torch.zeros_like(fail, dtype=torch.int64))
        return features, class_probs, mask.to(torch.uint8), class_logits

    @torch.no_grad()
    def run(self, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`forward` over die grids ``(N, H, W)`` at the model input size, in batches:
        ``(class_probs, mask, class_logits)`` as numpy arrays."""
        self.eval()
        grids = np.asarray(grids, dtype=np.uint8)
        device = self.temperature.device
        outs: list[list[np.ndarray]] = [[], [], []]
        for start in range(0, len(grids), batch_size):
            for out, value in zip(outs, self(encode_grids(grids[start : start + batch_size]).to(device))):
                out.append(value.float().cpu().numpy() if value.is_floating_point() else value.cpu().numpy())
        if not len(grids):
            return np.zeros((0, 9), np.float32), np.zeros((0, *grids.shape[1:]), np.uint8), np.zeros((0, 9), np.float32)
        return tuple(np.concatenate(out) for out in outs)  # type: ignore[return-value]

    def predict(self, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated class probabilities ``(N, 9)`` and fail-die masks ``(N, H, W)``."""
        probs, masks, _ = self.run(grids, batch_size)
        return probs, masks

    def calibrate(self, grids: np.ndarray, labels: np.ndarray) -> float:
        """Fit the temperature on labeled wafers (the validation split); returns it."""
        labeled = np.asarray(labels) >= 0
        logits = self.run(np.asarray(grids)[labeled])[2]
        self.temperature.fill_(fit_temperature(logits, np.asarray(labels)[labeled]))
        return float(self.temperature)


def as_predictor(model: WaferUNet | WaferPredictor) -> WaferPredictor:
    """``model`` itself when it is a predictor, else the bare net with temperature 1."""
    return model if isinstance(model, WaferPredictor) else WaferPredictor(model)
