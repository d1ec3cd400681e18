"""``augment`` in ``params.yaml``: the GAN augmentation stage (light to import: no torch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GanAugmentConfig"]


class GanAugmentConfig(BaseModel):
    """``augment`` in ``params.yaml``; what each does: :mod:`waferflow.gan.augment` and the README."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_count: int = Field(200, ge=0)
    target_count: int = Field(300, ge=1)
    oversample: float = Field(2.0, ge=1.0)
    gan_steps: int = Field(250, ge=1, description="generator steps (x n_critic critic steps)")
    batch_size: int = 32
    latent_dim: int = 64
    gen_width: int = 64
    critic_width: int = 16
    lr: float = 3e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int = 5
    gp_lambda: float = 10.0
    min_confidence: float = Field(0.5, ge=0, le=1)
    min_novelty: float = Field(0.02, ge=0, le=1)
    reference_steps: int = 300
    seed: int = 0
