"""Wafers held as arrays at one grid size: what training, evaluation and scoring read.

``WaferArrays`` holds die grids ``(N, H, W)`` uint8, per-die mask targets ``(N, H, W)`` int64
(the pattern class per die, :data:`IGNORE_INDEX` where there is no die or no annotated mask)
and labels ``(N,)`` (class index, -1 when unlabeled). Build it from a split's table
(:meth:`WaferArrays.from_frame`, :meth:`WaferArrays.from_parquet`) or directly from arrays.

Example:
    >>> arrays = WaferArrays.from_parquet("data/processed/test.parquet")  # doctest: +SKIP
    >>> arrays.grids.shape, arrays.labels[:3]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from waferflow.classes import CLASSES, DIE_NONE
from waferflow.data.records import read_frame

__all__ = ["WaferArrays", "IGNORE_INDEX", "mask_target"]

IGNORE_INDEX = 255


def mask_target(grids: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """Per-die target (N, H, W) int64: mask classes on dies, IGNORE_INDEX elsewhere."""
    grids = np.asarray(grids)
    if masks is None:
        return np.full(grids.shape, IGNORE_INDEX, np.int64)
    target = np.asarray(masks).astype(np.int64)
    target[grids == DIE_NONE] = IGNORE_INDEX
    return target


@dataclass
class WaferArrays:
    """Grids (N,H,W) uint8, mask targets (N,H,W) int64, labels (N,) int64; ``frame`` the table
    they came from, when they came from one."""

    grids: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    frame: pd.DataFrame | None = None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "WaferArrays":
        """A canonical table whose grids all have one size (the split stage resizes them)."""
        if frame.empty:
            raise ValueError("empty split: nothing to train or evaluate on")
        shapes = set(zip(frame["height"], frame["width"]))
        if len(shapes) != 1:
            raise ValueError(f"grids of several shapes {sorted(shapes)[:3]}...; run the split stage (it resizes)")
        (h, w), n = shapes.pop(), len(frame)
        grids = np.frombuffer(b"".join(frame["die_grid"]), np.uint8).reshape(n, h, w).copy()
        targets = np.stack(
            [
                mask_target(g, None if m is None else np.frombuffer(m, np.uint8).reshape(h, w))
                for g, m in zip(grids, frame["defect_mask"])
            ]
        )
        labels = np.array([CLASSES.index(c) if isinstance(c, str) else -1 for c in frame["label"]], np.int64)
        return cls(grids, targets, labels, frame.reset_index(drop=True))

    @classmethod
    def from_parquet(cls, path: str | Path) -> "WaferArrays":
        return cls.from_frame(read_frame(path))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows) -> "WaferArrays":
        """The wafers at ``rows`` (indexes or a boolean mask), with their rows of ``frame``."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        frame = None if self.frame is None else self.frame.iloc[rows].reset_index(drop=True)
        return WaferArrays(self.grids[rows], self.targets[rows], self.labels[rows], frame)

    @classmethod
    def concat(cls, *parts: "WaferArrays") -> "WaferArrays":
        """The wafers of ``parts`` one after the other (no ``frame``: the parts may come from other tables)."""
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("grids", "targets", "labels")))

    def by_source(self) -> dict[str, "WaferArrays"]:
        """The wafers of each ``frame["source"]`` (``unknown`` where empty), in source order;
        ``{}`` without a frame or a source column."""
        if self.frame is None or "source" not in self.frame:
            return {}
        sources = self.frame["source"].fillna("unknown").to_numpy()
        return {str(source): self.take(sources == source) for source in sorted(set(sources))}
