"""The WM-811K defect-pattern vocabulary shared by every stage.

Wafer-level labels are the nine WM-811K failure types. Per-die masks use index 0 for
"no pattern" (background) and 1..8 for the eight pattern classes, in the order below; the
class ``none`` has no die-level pattern and so no mask index.

Example:
    >>> from waferflow.classes import CLASSES, mask_index
    >>> mask_index("Center"), CLASSES[-1]
    (1, 'none')
"""

from __future__ import annotations

__all__ = [
    "CLASSES",
    "PATTERN_CLASSES",
    "NONE_CLASS",
    "DIE_NONE",
    "DIE_PASS",
    "DIE_FAIL",
    "DIE_INVALID",
    "mask_index",
    "class_index",
]

CLASSES: tuple[str, ...] = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)
NONE_CLASS = "none"
PATTERN_CLASSES: tuple[str, ...] = CLASSES[:-1]

# Die codes, as in WM-811K's waferMap arrays.
DIE_NONE = 0
DIE_PASS = 1
DIE_FAIL = 2
# Written by ingest for a die whose source value is not a valid code (NaN, 7, -1, 2.5 ...),
# so that validation can reject the wafer with a reason instead of ingest guessing.
DIE_INVALID = 255


def class_index(label: str) -> int:
    """Index of a wafer-level label in :data:`CLASSES`."""
    try:
        return CLASSES.index(label)
    except ValueError:
        raise ValueError(f"unknown wafer class {label!r}; known: {', '.join(CLASSES)}") from None


def mask_index(label: str) -> int:
    """Per-die mask index of a pattern class (1..8); ``none`` has no mask index."""
    if label == NONE_CLASS:
        raise ValueError("class 'none' has no die-level pattern and no mask index")
    return class_index(label) + 1
