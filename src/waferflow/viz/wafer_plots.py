"""Wafer-map rendering: die grid colours, defect-mask overlay, per-class galleries (PNG).

Colours: no die = white, pass = light green, fail = dark red; the defect mask is outlined
per die in the colour of its class, so an FA engineer sees which fails belong to the pattern.

Example:
    >>> from waferflow.synth import WaferGenerator
    >>> from waferflow.viz import save_gallery
    >>> recs = [WaferGenerator(0).make(c, i) for c in ("Center", "Scratch") for i in range(2)]
    >>> save_gallery(recs, "/tmp/gallery.png", per_class=2)  # doctest: +ELLIPSIS
    PosixPath('/tmp/gallery.png')
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from waferflow.classes import CLASSES, PATTERN_CLASSES  # noqa: E402
from waferflow.data.records import WaferRecord  # noqa: E402
from waferflow.fileio import save_figure  # noqa: E402

__all__ = ["plot_wafer", "save_wafer_grid", "save_gallery", "DIE_COLORS"]

DIE_COLORS = ListedColormap(["#ffffff", "#b7e4a7", "#8b0000"])
_MASK_COLORS = plt.get_cmap("tab10")


def plot_wafer(ax, die_grid: np.ndarray, defect_mask: np.ndarray | None = None, title: str | None = None) -> None:
    """Draw one wafer map on ``ax``, with the defect mask as coloured die outlines."""
    grid = np.where(die_grid > 2, 0, die_grid)  # invalid codes drawn as empty
    ax.imshow(grid, cmap=DIE_COLORS, vmin=0, vmax=2, interpolation="nearest")
    if defect_mask is not None and defect_mask.any():
        for idx in np.unique(defect_mask[defect_mask > 0]):
            ax.contour(defect_mask == idx, levels=[0.5], colors=[_MASK_COLORS(int(idx) - 1)], linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


#: One panel of :func:`save_wafer_grid`: die grid, optional defect mask, optional title.
Panel = tuple[np.ndarray, "np.ndarray | None", "str | None"]


def save_wafer_grid(
    rows: Sequence[Sequence[Panel]],
    path: str | Path,
    title: str,
    cols: int | None = None,
    cell: tuple[float, float] = (1.6, 1.7),
    dpi: int = 110,
    title_size: int = 8,
) -> Path:
    """Save a PNG of wafer panels laid out in ``rows`` (short rows leave blank cells)."""
    cols = cols or max((len(r) for r in rows), default=1)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell[0] * cols, cell[1] * len(rows)), squeeze=False)
    for r, panels in enumerate(rows):
        for c in range(cols):
            axes[r][c].axis("off")
            if c < len(panels):
                plot_wafer(axes[r][c], *panels[c])
    fig.suptitle(title, fontsize=title_size)
    fig.tight_layout()
    path = save_figure(fig, path, dpi=dpi)
    plt.close(fig)
    return path


def save_gallery(
    records: Iterable[WaferRecord],
    path: str | Path,
    per_class: int = 6,
    title: str = "wafer maps per class",
    with_mask: bool = True,
) -> Path:
    """Save a PNG with up to ``per_class`` wafers for each class present (rows = classes)."""
    by_class: dict[str, list[WaferRecord]] = defaultdict(list)
    for rec in records:
        key = rec.label or "unlabeled"
        if len(by_class[key]) < per_class:
            by_class[key].append(rec)
    order: Sequence[str] = [c for c in (*CLASSES, "unlabeled") if c in by_class]
    if not order:
        raise ValueError("no records to draw in the gallery")
    rows = [
        [
            (rec.die_grid, rec.defect_mask if with_mask else None, f"{cls} {rec.shape[0]}x{rec.shape[1]}")
            for rec in by_class[cls]
        ]
        for cls in order
    ]
    legend = ", ".join(f"{i + 1}={c}" for i, c in enumerate(PATTERN_CLASSES))
    return save_wafer_grid(
        rows, path, f"{title}\nwhite: no die, green: pass, red: fail; outlines: defect mask ({legend})", cols=per_class
    )
