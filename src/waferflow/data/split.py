"""Preprocess and split: resize to the model size, then a deterministic lot-disjoint split.

Wafers of one lot share process conditions, so no lot sits in two of train / val / test: whole
lots are held out, stratified by class as far as lots allow (scikit-learn's
``StratifiedGroupKFold``, seeded). When the source fixes the test set (WM-811K's
``trianTestLabel``, the generator's test set) and ``honour_source_split`` is on, those wafers
form the test split — with every other labeled wafer of their lots, so that no test lot is
trained on (``split.json`` says how many moved) — and the rest is split into train / val. A source
that fixes no test set beside one that does (a fab's files beside the generated maps) gets its
own ``test_fraction`` of whole lots held out, so each source is tested (``split.json``:
``test_by_source``; evaluate and gate score each source apart).
Unlabeled wafers form the ``unlabeled`` pool (active learning reads it). Every resized wafer
keeps its original shape in ``attrs["orig_shape"]``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold
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


def _hold_out_lots(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out whole lots, about ``fraction`` of the wafers, stratified by label as far as lots
    allow; (rest, held out). A single lot cannot be split and stays whole in the rest."""
    lots = frame["lot_id"].astype(str)
    n_lots = lots.nunique()
    if fraction <= 0 or frame.empty or n_lots < 2:
        return frame, frame.iloc[0:0]
    n_splits = min(max(2, round(1 / fraction)), n_lots)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer lots than folds: stratified as far as it goes
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        _, taken = next(folds.split(frame, frame["label"].astype(str), lots))
    held = frame.iloc[taken]
    return frame.drop(index=held.index), held


def split_frame(frame: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """Split a canonical DataFrame into train / val / test / unlabeled, lot-disjoint (deterministic per seed)."""
    frame = frame.sort_values(["lot_id", "wafer_id"], kind="stable").reset_index(drop=True)
    labeled = frame[frame["label"].notna()]
    unlabeled = frame[frame["label"].isna()]
    sources = labeled["source"].fillna("unknown") if "source" in labeled else pd.Series("unknown", labeled.index)
    fixed_test = labeled[labeled["split_hint"] == "test"] if cfg.honour_source_split else labeled.iloc[0:0]
    fixing = set(sources[fixed_test.index])  # sources that fix their own test set
    test_lots = set(fixed_test["lot_id"])  # their test wafers, and every labeled wafer of those lots
    free = labeled[~sources.isin(fixing) & ~labeled["lot_id"].isin(test_lots)]
    if not free.empty:  # sources that fix none (a fab's files beside the generator's): whole lots held out
        test_lots |= set(_hold_out_lots(free, cfg.test_fraction, cfg.seed)[1]["lot_id"])
    test = labeled[labeled["lot_id"].isin(test_lots)]
    pool = labeled.drop(index=test.index)
    val_share = cfg.val_fraction / (1 - cfg.test_fraction) if fixed_test.empty else cfg.val_fraction
    train, val = _hold_out_lots(pool, val_share, cfg.seed + 1)
    parts = {
        name: part.sort_values(["lot_id", "wafer_id"], kind="stable").reset_index(drop=True)
        for name, part in zip(SPLITS, (train, val, test, unlabeled))
    }
    moved = sources[test.index].isin(fixing) & (test["split_hint"] != "test")
    parts["test"].attrs["moved_to_test"] = int(moved.sum())
    return parts


def split_counts(splits: dict[str, pd.DataFrame]) -> dict:
    """Class counts per split, for ``metrics/split.json``."""
    out = {}
    for name, part in splits.items():
        counts = part["label"].fillna("unlabeled").value_counts().to_dict()
        out[name] = {
            "total": int(len(part)),
            "lots": int(part["lot_id"].nunique()),
            **{c: int(counts.get(c, 0)) for c in (*CLASSES, "unlabeled") if counts.get(c, 0)},
        }
    labeled_lots = [set(splits[name]["lot_id"]) for name in ("train", "val", "test") if name in splits]
    shared = (
        set.union(*(a & b for i, a in enumerate(labeled_lots) for b in labeled_lots[i + 1 :]))
        if labeled_lots
        else set()
    )
    out["lots_in_two_splits"] = len(shared)
    if "test" in splits:
        out["moved_to_test"] = int(splits["test"].attrs.get("moved_to_test", 0))
        if "source" in splits["test"]:
            out["test_by_source"] = {
                str(k): int(v)
                for k, v in splits["test"]["source"].fillna("unknown").value_counts().sort_index().items()
            }
    return out
