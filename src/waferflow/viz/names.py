"""File names for per-wafer images (prediction overlays, the annotation queue's pictures).

``wafer_file_name("LOT7", "3")`` is ``LOT7_3.png``. Ids that are not plain file-name text (other
characters than ASCII letters, digits and ``-_.``, leading dots, over :data:`NAME_CHARS`, or a
``_`` in the wafer id, which would make ``<lot>_<wafer>`` ambiguous) are made safe, cut to length
and followed by a hash of both ids: distinct wafers never share a file, none is hidden, and no
name nears the 255-byte limit.

Example:
    >>> wafer_file_name("LOT7", "3"), wafer_file_name("a/b", "1") != wafer_file_name("a_b", "1")
    ('LOT7_3.png', True)
"""

from __future__ import annotations

import hashlib
import json

__all__ = ["wafer_file_name", "NAME_CHARS"]

NAME_CHARS = 120  # the readable part: with the hash and the suffix, far below 255 bytes


def _safe(name: str) -> str:
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_." else "_" for ch in name)


def wafer_file_name(lot_id: object, wafer_id: object, suffix: str = ".png") -> str:
    """``<lot>_<wafer><suffix>``, made safe and unique as the module doc says."""
    lot, wafer = str(lot_id), str(wafer_id)
    text = f"{_safe(lot)}_{_safe(wafer)}".lstrip(".")[:NAME_CHARS]
    if text != f"{lot}_{wafer}" or "_" in wafer:
        text += "_" + hashlib.sha256(json.dumps([lot, wafer]).encode()).hexdigest()[:12]
    return text + suffix
