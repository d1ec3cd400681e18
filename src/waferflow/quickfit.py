"""A short, CPU-sized fit of the same model and losses, for helpers that need *a* trained model
rather than *the* model: the GAN stage's reference classifier and the active-learning benchmark.

No MLflow run, no checkpoint, no validation loop: a fixed number of optimiser steps (one-cycle LR)
on in-memory arrays, with the training augmentation.
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
from torch.utils.data import DataLoader

from waferflow.data.arrays import WaferArrays
from waferflow.models.config import ModelConfig
from waferflow.models.wafer_unet import WaferUNet
from waferflow.training.augment import build_augmentation
from waferflow.training.config import TrainConfig
from waferflow.training.data import WaferDataset, class_weights
from waferflow.training.lightning_module import WaferLitModule
from waferflow.training.trainer import load_initial_state

__all__ = ["fit_quick", "SMALL_MODEL"]

#: A small U-Net (3 encoder stages) that trains in seconds on 32-64 px grids.
SMALL_MODEL = ModelConfig(encoder_depth=3, decoder_channels=(32, 16, 8), classifier_dropout=0.3)


def fit_quick(
    data: WaferArrays,
    steps: int = 250,
    seed: int = 0,
    model: ModelConfig = SMALL_MODEL,
    lr: float = 0.003,
    batch_size: int = 32,
    init: WaferUNet | None = None,
) -> WaferUNet:
    """Train ``model`` for ``steps`` optimiser steps on ``data`` (from ``init``'s weights when given:
    fine-tuning); returns the network in eval mode."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    cfg = TrainConfig(
        seed=seed, lr=lr, batch_size=batch_size, accelerator="cpu", channels_last=False, deterministic=False
    )
    L.seed_everything(seed, workers=False, verbose=False)
    module = WaferLitModule(model, cfg, class_weights(data.labels))
    if init is not None:
        load_initial_state(module.net, init.state_dict())
    loader = DataLoader(
        WaferDataset(data, build_augmentation(cfg.augment, seed)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(data) > batch_size,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        trainer.fit(module, train_dataloaders=loader)
    return module.net.eval()
