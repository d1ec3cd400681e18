"""Shared fixtures: small real inputs the tests build themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from waferflow.data.records import WaferRecord
from waferflow.synth import WaferGenerator

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def disc(rows: int, cols: int, fails: list[tuple[int, int]] = ()) -> np.ndarray:
    """A round wafer grid of pass dies with the given fail dies."""
    y, x = np.mgrid[:rows, :cols]
    inside = ((y + 0.5 - rows / 2) / (rows / 2)) ** 2 + ((x + 0.5 - cols / 2) / (cols / 2)) ** 2 <= 1
    grid = inside.astype(np.uint8)
    for r, c in fails:
        grid[r, c] = 2
    return grid


@pytest.fixture
def generator() -> WaferGenerator:
    return WaferGenerator(seed=11)


@pytest.fixture
def small_records(generator) -> list[WaferRecord]:
    from waferflow.classes import CLASSES

    recs = []
    for i, cls in enumerate(CLASSES * 3):
        rec = generator.make(cls, index=i, lot_id=f"L{i // 5}", wafer_id=str(i % 5 + 1))
        recs.append(rec)
    return recs
