"""Preprocess and split: resize to the model size, then a deterministic stratified split.

Labeled wafers go to train / val / test, stratified by class with a fixed seed. When the
source fixes the test set (WM-811K's ``trianTestLabel``, the generator's test set) and
``honour_source_split`` is on, those wafers form the test split and the rest is split into
train / val. Unlabeled wafers form the ``unlabeled`` pool (active learning reads it).
Every resized wafer keeps its original shape in ``attrs["orig_shape"]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from waferflow.classes import CLASSES
from waferflow.data.records import grid_from_row, mask_from_row
from waferflow.data.resize import resize_grid

__all__ = ["SplitConfig", "resize_frame", "split_frame", "split_counts"]

SPLITS = ("train", "val", "test", "unlabeled")


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    honour_source_split: bool = True
    image_size: tuple[int, int] = (64, 64)


def resize_frame(frame: pd.DataFrame, size: tuple[int, int], progress: bool = False) -> pd.DataFrame:
    """Resize every grid and mask in a canonical DataFrame to ``size`` (codes stay exact)."""
    out = frame.copy()
    grids, masks, attrs = [], [], []
    for row in tqdm(
        frame.to_dict("records"), desc=f"resize to {size[0]}x{size[1]}", disable=not progress, unit="wafer"
    ):
        grids.append(resize_grid(grid_from_row(row), size).tobytes())
        mask = mask_from_row(row)
        masks.append(None if mask is None else resize_grid(mask, size).tobytes())
        a = json.loads(row["attrs"]) if isinstance(row.get("attrs"), str) else {}
        a["orig_shape"] = [int(row["height"]), int(row["width"])]
        attrs.append(json.dumps(a, sort_keys=True))
    out["die_grid"], out["defect_mask"], out["attrs"] = grids, masks, attrs
    out["height"], out["width"] = np.int32(size[0]), np.int32(size[1])
    return out


def _stratified(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``fraction`` of ``frame`` stratified by label; classes too small to split stay."""
    if fraction <= 0 or frame.empty:
        return frame, frame.iloc[0:0]
    counts = frame["label"].value_counts()
    splittable = frame[frame["label"].map(counts) >= 2]
    keep = frame[frame["label"].map(counts) < 2]
    n_take = int(round(fraction * len(splittable)))
    if n_take < splittable["label"].nunique() or len(splittable) - n_take < splittable["label"].nunique():
        stratify = None  # too few wafers for one per class on each side
    else:
        stratify = splittable["label"]
    if n_take == 0:
        return frame, frame.iloc[0:0]
    rest, taken = train_test_split(splittable, test_size=n_take, random_state=seed, stratify=stratify)
    return pd.concat([rest, keep]), taken


def split_frame(frame: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """Split a canonical DataFrame into train / val / test / unlabeled (deterministic per seed)."""
    frame = frame.sort_values(["lot_id", "wafer_id"], kind="stable").reset_index(drop=True)
    labeled = frame[frame["label"].notna()]
    unlabeled = frame[frame["label"].isna()]
    fixed_test = labeled[labeled["split_hint"] == "test"] if cfg.honour_source_split else labeled.iloc[0:0]
    pool = labeled.drop(index=fixed_test.index)
    if fixed_test.empty:
        pool, test = _stratified(pool, cfg.test_fraction, cfg.seed)
    else:
        test = fixed_test
    val_share = cfg.val_fraction / (1 - cfg.test_fraction) if fixed_test.empty else cfg.val_fraction
    train, val = _stratified(pool, val_share, cfg.seed + 1)
    return {
        name: part.sort_values(["lot_id", "wafer_id"], kind="stable").reset_index(drop=True)
        for name, part in zip(SPLITS, (train, val, test, unlabeled))
    }


def split_counts(splits: dict[str, pd.DataFrame]) -> dict:
    """Class counts per split, for ``metrics/split.json``."""
    out = {}
    for name, part in splits.items():
        counts = part["label"].fillna("unlabeled").value_counts().to_dict()
        out[name] = {
            "total": int(len(part)),
            **{c: int(counts.get(c, 0)) for c in (*CLASSES, "unlabeled") if counts.get(c, 0)},
        }
    return out
