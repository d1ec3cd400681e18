"""Training and augmentation settings (``train`` in ``params.yaml``); light to import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AugmentConfig", "TrainConfig"]


class AugmentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rotate90: bool = True
    flips: bool = True
    noise_fail_rate: float = 0.01  # up to this share of pass dies become background fails
    dropout_rate: float = 0.03  # up to this share of fail dies become pass (and leave the mask)
    noise_probability: float = 0.5


class TrainConfig(BaseModel):
    """Training (``train`` in ``params.yaml``); devices and strategy only reach the Trainer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 42
    max_epochs: int = 26
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 8
    mask_loss_weight: float = 1.0
    class_loss_weight: float = 1.0
    class_loss: str = Field("weighted_ce", pattern="^(weighted_ce|focal)$")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool = True
    use_synthetic: bool = True  # add the augment stage's GAN maps (class loss only: they carry no mask)
    channels_last: bool = True  # NHWC convolutions: ~10-15 % faster on CPU (oneDNN) and on GPUs with AMP
    # Fine-tuning: start from these weights instead of a random init — a weights.pt file or a registry
    # URI ``models:/<name>@<alias>`` (e.g. the champion trained on generated maps, fine-tuned on a fab's
    # real maps). Empty: train from scratch.
    init_from: str = ""
    # Semi-supervised: > 0 fits a teacher, pseudo-labels the unlabeled split where its calibrated
    # confidence reaches this, then fine-tunes on both (see training.pseudo_labels). 0: off.
    pseudo_label_threshold: float = Field(0.0, ge=0.0, le=1.0)
