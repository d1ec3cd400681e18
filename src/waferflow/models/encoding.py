"""How a die grid becomes the network's input, and a defect mask its target.

Input channels (float32, 0/1):
  0. wafer area: 1 where a die exists (codes 1 and 2). It tells the network where the wafer's
     edge is, which separates Edge-Ring/Edge-Loc from Donut/Loc on any grid size.
  1. fail dies: 1 where the die failed (code 2).
A pass die is (area, not fail), an empty cell (0, 0); no ordinal "2 > 1" is implied.

The mask target (the class per die, ignored where there is no die or no annotated mask) is
:func:`waferflow.data.arrays.mask_target`.

Example:
    >>> import numpy as np
    >>> encode_grids(np.array([[[0, 1, 2]]], np.uint8))[0, :, 0].tolist()
    [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np
import torch

from waferflow.classes import DIE_FAIL, DIE_NONE

__all__ = ["N_CHANNELS", "encode_grids"]

N_CHANNELS = 2


def encode_grids(grids: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 die grids -> (N, 2, H, W) float32 network input."""
    g = torch.as_tensor(np.asarray(grids) if not isinstance(grids, torch.Tensor) else grids)
    if g.ndim != 3:
        raise ValueError(f"expected (N, H, W) die grids, got shape {tuple(g.shape)}")
    return torch.stack([(g != DIE_NONE), (g == DIE_FAIL)], dim=1).float()
