"""LightningDataModule over the split's Parquet tables: splits, augmentation, loaders.

Example:
    >>> dm = WaferDataModule(Path("data/processed"), batch_size=64)  # doctest: +SKIP
    >>> dm.setup("fit"); batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
    >>> batch["x"].shape  # doctest: +SKIP
    torch.Size([64, 2, 64, 64])
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from waferflow.classes import CLASSES
from waferflow.data.arrays import WaferArrays
from waferflow.data.records import read_frame
from waferflow.models.encoding import encode_grids
from waferflow.training.augment import build_augmentation
from waferflow.training.config import AugmentConfig

__all__ = ["WaferDataset", "WaferDataModule", "class_weights"]


class WaferDataset(Dataset):
    def __init__(self, arrays: WaferArrays, augment=None) -> None:
        self.arrays, self.augment = arrays, augment

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        grid, target = self.arrays.grids[i], self.arrays.targets[i]
        if self.augment is not None:
            # albumentations masks are uint8-friendly: IGNORE_INDEX (255) survives flips and rotations
            out = self.augment(image=grid, mask=target.astype(np.uint8))
            grid, target = out["image"], out["mask"].astype(np.int64)
        return {
            "x": encode_grids(grid[None])[0],
            "mask": torch.from_numpy(np.ascontiguousarray(target)),
            "label": torch.tensor(self.arrays.labels[i]),
        }


def class_weights(labels: np.ndarray) -> list[float]:
    """Inverse-frequency class weights, mean 1 over the classes present (absent classes: 1)."""
    counts = np.bincount(labels[labels >= 0], minlength=len(CLASSES)).astype(float)
    present = counts > 0
    weights = np.ones(len(CLASSES))
    if present.any():
        inverse = 1.0 / counts[present]
        weights[present] = inverse / inverse.mean()
    return weights.round(6).tolist()


class WaferDataModule(L.LightningDataModule):
    """Train / val / test loaders over ``data_dir/{train,val,test}.parquet``."""

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 64,
        num_workers: int = 0,
        augment: AugmentConfig | None = None,
        seed: int = 42,
        extra_train: Sequence[Path] = (),
    ) -> None:
        """``extra_train``: more Parquet files of the train split's shape appended to it (GAN maps)."""
        super().__init__()
        self.data_dir, self.batch_size, self.num_workers = Path(data_dir), batch_size, num_workers
        self.extra_train = [Path(p) for p in extra_train]
        self.augment_cfg, self.seed = augment or AugmentConfig(), seed
        self.arrays: dict[str, WaferArrays] = {}

    def setup(self, stage: str | None = None) -> None:
        wanted = ("train", "val") if stage == "fit" else ("test",) if stage == "test" else ("train", "val", "test")
        for name in wanted:
            if name not in self.arrays:
                files = [self.data_dir / f"{name}.parquet", *(self.extra_train if name == "train" else [])]
                arrays = WaferArrays.from_frame(read_frame(files))
                if (arrays.labels < 0).any():
                    raise ValueError(f"{name} split holds unlabeled wafers")
                self.arrays[name] = arrays

    def class_weights(self) -> list[float]:
        self.setup("fit")
        return class_weights(self.arrays["train"].labels)

    def _loader(self, name: str, train: bool) -> DataLoader:
        aug = build_augmentation(self.augment_cfg, seed=self.seed) if train else None
        # A last training batch of one wafer breaks BatchNorm (a 1x1 deepest feature map has one
        # value per channel): drop it, and only it. Per rank under DDP (its sampler pads to ceil).
        world = getattr(self.trainer, "world_size", 1) if self.trainer is not None else 1
        per_rank = math.ceil(len(self.arrays[name]) / max(1, world))
        return DataLoader(
            WaferDataset(self.arrays[name], aug),
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            drop_last=train and per_rank > 1 and per_rank % self.batch_size == 1,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
