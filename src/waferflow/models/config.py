"""Architecture settings of the wafer U-Net (``model`` in ``params.yaml``); light to import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ModelConfig"]


class ModelConfig(BaseModel):
    """Architecture (``model`` in ``params.yaml``).

    Args:
        encoder_name: smp encoder (``resnet18``, ``resnet34`` ...).
        encoder_depth: Encoder stages (3..5); the input side must be divisible by ``2**depth``.
        decoder_channels: One entry per encoder stage.
        classifier_dropout: Dropout before the class head's linear layer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder_name: str = "resnet18"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    classifier_dropout: float = 0.2
