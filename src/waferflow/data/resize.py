"""Resize die grids and masks to the model's input size, keeping die codes exact.

Nearest-neighbour sampling (scikit-image ``resize`` with ``order=0``, no anti-aliasing): every
output cell takes the code of the input die under its centre, so no new codes appear and a
grid resized up by an integer factor and back comes out identical. The same function maps a
predicted mask back to the wafer's original shape.

Example:
    >>> import numpy as np
    >>> resize_grid(np.array([[0, 1], [2, 1]], np.uint8), (4, 4)).tolist()[0]
    [0, 0, 1, 1]
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

__all__ = ["resize_grid"]


def resize_grid(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D integer grid (die codes or mask indices) to ``shape``."""
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"expected a non-empty 2-D grid, got shape {grid.shape}")
    shape = (int(shape[0]), int(shape[1]))
    if grid.shape == shape:
        return grid.copy()
    out = resize(grid, shape, order=0, preserve_range=True, anti_aliasing=False, mode="edge")
    return np.rint(out).astype(grid.dtype)
