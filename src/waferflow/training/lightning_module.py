"""WaferLitModule: losses, optimiser, schedule and validation metrics for :class:`WaferUNet`.

Loss = ``mask_loss_weight`` * (Dice + Focal over dies, smp.losses) +
``class_loss_weight`` * (class-weighted cross-entropy, or smp's focal loss) on the wafer class.
Dies with no die or no annotation (IGNORE_INDEX) never enter the mask loss, so wafers without
a mask (GAN samples) train the class head only.

Example:
    >>> module = WaferLitModule(ModelConfig(), TrainConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import lightning as L
import segmentation_models_pytorch as smp
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from waferflow.data.arrays import IGNORE_INDEX
from waferflow.models.config import ModelConfig
from waferflow.models.wafer_unet import N_WAFER_CLASSES, WaferUNet
from waferflow.training.config import TrainConfig

__all__ = ["WaferLitModule"]


class WaferLitModule(L.LightningModule):
    def __init__(
        self, model: ModelConfig | dict, train: TrainConfig | dict, class_weights: list[float] | None = None
    ) -> None:
        super().__init__()
        model = ModelConfig.model_validate(model)
        train = TrainConfig.model_validate(train)
        self.save_hyperparameters(
            {"model": model.model_dump(), "train": train.model_dump(), "class_weights": class_weights}
        )
        self.train_cfg = train
        self.net = WaferUNet(model)
        if train.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        self.focal = smp.losses.FocalLoss("multiclass", ignore_index=IGNORE_INDEX)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.class_loss = (
            nn.CrossEntropyLoss(weight=weight)
            if train.class_loss == "weighted_ce"
            else smp.losses.FocalLoss("multiclass")
        )
        self.val_f1 = MulticlassF1Score(N_WAFER_CLASSES, average="macro")
        self.val_acc = MulticlassAccuracy(N_WAFER_CLASSES, average="micro")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.train_cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask_logits, class_logits = self(batch["x"])
        target = batch["mask"]
        if (target != IGNORE_INDEX).any():
            mask_loss = self.dice(mask_logits, target) + self.focal(mask_logits, target)
        else:  # no annotated die in the batch: the mask head gets no signal
            mask_loss = mask_logits.sum() * 0.0
        class_loss = self.class_loss(class_logits, batch["label"])
        total = self.train_cfg.mask_loss_weight * mask_loss + self.train_cfg.class_loss_weight * class_loss
        return {"loss": total, "mask_loss": mask_loss, "class_loss": class_loss, "class_logits": class_logits}

    def training_step(self, batch, batch_idx):
        out = self.losses(batch)
        n = batch["x"].shape[0]
        self.log("train_loss", out["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=n, sync_dist=True)
        self.log_dict(
            {"train_mask_loss": out["mask_loss"], "train_class_loss": out["class_loss"]},
            on_step=False,
            on_epoch=True,
            batch_size=n,
            sync_dist=True,
        )
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        out = self.losses(batch)
        n = batch["x"].shape[0]
        preds = out["class_logits"].argmax(1)
        self.val_f1.update(preds, batch["label"])
        self.val_acc.update(preds, batch["label"])
        self.log_dict(
            {"val_loss": out["loss"], "val_mask_loss": out["mask_loss"], "val_class_loss": out["class_loss"]},
            on_epoch=True,
            batch_size=n,
            sync_dist=True,
        )

    def on_validation_epoch_end(self) -> None:
        self.log("val_macro_f1", self.val_f1.compute(), prog_bar=True, sync_dist=True)
        self.log("val_accuracy", self.val_acc.compute(), sync_dist=True)
        self.val_f1.reset()
        self.val_acc.reset()

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.train_cfg.lr, weight_decay=self.train_cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.train_cfg.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
