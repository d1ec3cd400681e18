"""PNG / TIFF wafer-map images where one pixel is one die.

Greyscale images map each pixel to the die code whose grey level is nearest
(``grey_levels``, default 0 = no die, 128 = pass, 255 = fail: the code times ~127, as
``waferflow`` writes them); 16-bit images are scaled to that 0-255 range first. Colour / palette
images map each pixel to the nearest colour of
``palette`` (default: waferflow's gallery colours: white no die, light green pass, dark red
fail); a pixel farther than ``tolerance`` from every level or colour is not a die code, and the
image is rejected with the first such pixel named. The lot is the part of the file name before
the last ``_`` (else the folder name), the wafer the part after it; a parent folder named like a
class (``Edge-Ring/lot7_3.png``) gives the label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from waferflow.classes import CLASSES
from waferflow.data.parsers.base import FileRejected, ParseResult, normalise_label, side_problem
from waferflow.data.records import WaferRecord

__all__ = ["ImageOptions", "parse_image", "grid_to_grey"]


@dataclass(frozen=True)
class ImageOptions:
    grey_levels: tuple[int, int, int] = (0, 128, 255)
    palette: tuple[tuple[int, int, int], ...] = field(default=((255, 255, 255), (183, 228, 167), (139, 0, 0)))
    tolerance: float = 40.0


def grid_to_grey(grid: np.ndarray, levels: tuple[int, int, int] = (0, 128, 255)) -> np.ndarray:
    """Encode a die grid as a greyscale image (inverse of the greyscale mapping)."""
    return np.asarray(levels, np.uint8)[grid]


def _grey_8bit(img: Image.Image, path: Path) -> np.ndarray:
    """Grey levels on the 0-255 scale ``grey_levels`` uses: 16-bit images are scaled (65535 ->
    255), never clipped as ``convert("L")`` would (every 16-bit pass die would read as a fail)."""
    if img.mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32)
    pixels = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        return (pixels / 257.0).astype(np.float32)
    if img.mode in ("I", "F"):
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0 or high > 65535 or not np.isfinite(pixels).all():
            raise FileRejected(
                path,
                f"{img.mode}-mode grey levels span {low:g}..{high:g}: neither an 8-bit nor a "
                f"16-bit image, so no grey level can be matched to a die code",
                field="pixel",
            )
        return (pixels / (257.0 if high > 255 else 1.0)).astype(np.float32)
    return pixels.astype(np.float32)


def _read_pixels(path: Path, opts: ImageOptions) -> tuple[np.ndarray, np.ndarray, str]:
    """(pixels H x W x C, reference levels or colours N x C, mode), the size checked before decoding."""
    with Image.open(path) as img:
        if problem := side_problem(img.height, img.width):
            raise FileRejected(path, f"{img.width} x {img.height} pixels: {problem}", field="size")
        img.load()
        if img.mode in ("L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "1"):
            return _grey_8bit(img, path)[..., None], np.asarray(opts.grey_levels, np.float32)[:, None], img.mode
        return (np.asarray(img.convert("RGB"), dtype=np.float32), np.asarray(opts.palette, np.float32), img.mode)


def parse_image(path: str | Path, options: ImageOptions | None = None) -> ParseResult:
    path = Path(path)
    opts = options or ImageOptions()
    try:
        pixels, refs, mode = _read_pixels(path, opts)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FileRejected(path, f"not a readable image ({exc.__class__.__name__}: {exc})") from None
    dist = np.stack([np.linalg.norm(pixels - ref, axis=-1) for ref in refs], axis=-1)
    codes = dist.argmin(-1).astype(np.uint8)
    far = dist.min(-1) > opts.tolerance
    if far.any():
        y, x = (int(i) for i in np.argwhere(far)[0])
        raise FileRejected(
            path,
            f"{int(far.sum())} pixel(s) match no die code within tolerance "
            f"{opts.tolerance}; first at row {y}, column {x}: {pixels[y, x].tolist()} ({mode})",
            field="pixel",
        )
    stem = path.stem
    lot, sep, wafer = stem.rpartition("_")
    if not sep:
        lot, wafer = path.parent.name or "images", stem
    label = normalise_label(path.parent.name)
    return ParseResult(
        records=[
            WaferRecord(
                die_grid=codes,
                lot_id=lot,
                wafer_id=wafer,
                label=label if label in CLASSES else None,
                source="image",
                source_ref=str(path),
            )
        ]
    )
