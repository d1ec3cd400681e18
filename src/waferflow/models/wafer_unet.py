"""WaferUNet: a segmentation-models-pytorch U-Net with a ResNet encoder and two heads.

* mask head: per-die logits over background + the 8 pattern classes (9 channels);
* class head: wafer-level logits over the 9 WM-811K classes, from smp's classification head
  (``aux_params``) on the encoder's deepest features.

No pretrained weights (``encoder_weights=None``): none can be downloaded here, and ImageNet
features do not transfer to 2-channel die grids anyway.

Example:
    >>> import torch
    >>> net = WaferUNet(ModelConfig(encoder_depth=4, decoder_channels=(32, 16, 8, 8)))
    >>> mask_logits, class_logits = net(torch.zeros(2, 2, 64, 64))
    >>> tuple(mask_logits.shape), tuple(class_logits.shape)
    ((2, 9, 64, 64), (2, 9))
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from waferflow.classes import CLASSES, PATTERN_CLASSES
from waferflow.models.config import ModelConfig
from waferflow.models.encoding import N_CHANNELS

__all__ = ["ModelConfig", "WaferUNet", "N_MASK_CLASSES", "N_WAFER_CLASSES"]

N_MASK_CLASSES = len(PATTERN_CLASSES) + 1
N_WAFER_CLASSES = len(CLASSES)


class WaferUNet(nn.Module):
    """Two-headed U-Net; ``forward`` returns ``(mask_logits, class_logits)``."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        if len(self.config.decoder_channels) != self.config.encoder_depth:
            raise ValueError(
                f"decoder_channels needs {self.config.encoder_depth} entries (one per encoder stage), "
                f"got {list(self.config.decoder_channels)}"
            )
        self.net = smp.Unet(
            encoder_name=self.config.encoder_name,
            encoder_weights=None,
            encoder_depth=self.config.encoder_depth,
            decoder_channels=list(self.config.decoder_channels),
            in_channels=N_CHANNELS,
            classes=N_MASK_CLASSES,
            aux_params={"classes": N_WAFER_CLASSES, "dropout": self.config.classifier_dropout},
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask_logits, class_logits = self.net(x)
        return mask_logits, class_logits
