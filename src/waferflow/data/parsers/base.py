"""What every parser shares: the reject record, the errors, and die-code conversion."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from waferflow.classes import CLASSES, DIE_INVALID
from waferflow.data.records import WaferRecord

__all__ = [
    "Reject",
    "ParseResult",
    "FileRejected",
    "RowRejected",
    "to_die_grid",
    "normalise_label",
    "MAX_SIDE",
    "side_problem",
    "field_count_reason",
    "other_delimiter",
    "split_line",
    "DELIMITERS",
]

# No wafer has more dies across than this (WM-811K: at most 212; a 300 mm wafer of 0.2 mm dies:
# 1 500). Parsers check it before allocating a grid, so a typo'd coordinate of 10**7 in a 2 KB
# CSV is a reject with a reason, not a 100 TB allocation. validate.max_side narrows it further.
MAX_SIDE = 2048


@dataclass
class Reject:
    """One rejected file or row: where it is, which field, and why."""

    file: str
    row: str | None
    field: str | None
    reason: str
    stage: str = "ingest"
    raw: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = self.file + (f" row {self.row}" if self.row is not None else "")
        return f"{where}: {self.field or '-'}: {self.reason}"


@dataclass
class ParseResult:
    """Records a parser produced from one file, and the rows it rejected."""

    records: list[WaferRecord] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class FileRejected(Exception):
    """The whole file cannot be read (truncated pickle, wrong CSV header, not an image ...)."""

    def __init__(self, path: str | Path, reason: str, field: str | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.field = str(path), reason, field


class RowRejected(Exception):
    """One row / wafer of a file cannot become a record."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def side_problem(height: int, width: int) -> str | None:
    """Why a grid of this size cannot be a wafer map, or ``None`` when it can."""
    if height > MAX_SIDE or width > MAX_SIDE:
        return f"grid of {height} x {width} dies exceeds the {MAX_SIDE}-die limit on a side"
    return None


DELIMITERS = ",;\t|"  # what CSV files from testers, Excel and annotators use


def split_line(text: str, delimiter: str) -> list[str]:
    """The fields of one CSV line; ``csv.Error`` on an unbalanced quote (our CSVs have one record
    per line, so a quoted field never spans lines)."""
    if '"' not in text:  # the usual line: a plain split is what csv would do, several times faster
        return text.split(delimiter)
    return next(csv.reader([text], delimiter=delimiter, strict=True))


def other_delimiter(text: str, header_fields: int, delimiter: str) -> str | None:
    """The delimiter that splits a CSV line into the header's number of fields, when not the
    header's own (a file pasted together from two exports), else ``None``."""
    return next((d for d in DELIMITERS if d != delimiter and len(text.split(d)) == header_fields), None)


def field_count_reason(n_fields: int, text: str, header_fields: int, delimiter: str) -> str:
    """Why a CSV line with the wrong number of fields was rejected, naming the delimiter it seems to use."""
    reason = f"{n_fields} field(s), the header has {header_fields}"
    if other := other_delimiter(text, header_fields, delimiter):
        reason += f" (this line looks {other!r}-separated, the header {delimiter!r}-separated)"
    return reason


def to_die_grid(value: Any, field: str = "die_grid") -> np.ndarray:
    """Convert a source cell to a ``uint8`` die grid.

    Raises :class:`RowRejected` when the value is not a rectangular 2-D numeric array.
    Values that are not die codes (NaN, 2.5, 7, -1) become :data:`DIE_INVALID` so that
    validation rejects the wafer and says why, instead of ingest guessing a code.
    """
    try:
        arr = np.asarray(value)
        if arr.dtype == object:
            arr = np.array(arr.tolist(), dtype=float)
    except (ValueError, TypeError) as exc:
        raise RowRejected(field, f"ragged or non-numeric array ({exc.__class__.__name__}: {exc})") from None
    if arr.ndim != 2:
        raise RowRejected(field, f"expected a 2-D die grid, got {arr.ndim}-D shape {arr.shape}")
    if problem := side_problem(*arr.shape):
        raise RowRejected(field, problem)
    if arr.dtype.kind not in "biuf":
        raise RowRejected(field, f"expected numeric die codes, got dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    valid = np.isin(arr, (0, 1, 2))
    if valid.all():
        return arr.astype(np.uint8)
    out = np.full(arr.shape, DIE_INVALID, np.uint8)
    out[valid] = arr[valid].astype(np.uint8)
    return out


_LABEL_LOOKUP = {c.lower().replace("_", "-").replace(" ", "-"): c for c in CLASSES}
_LABEL_LOOKUP.update(
    {"nearfull": "Near-full", "edgeloc": "Edge-Loc", "edgering": "Edge-Ring", "normal": "none", "": None}
)  # type: ignore[dict-item]


def normalise_label(value: Any) -> str | None:
    """Map a source label to a WM-811K class name, tolerating case, ``_``/space and nesting.

    ``[['Edge-Ring']]`` -> ``'Edge-Ring'``; ``[]`` / ``None`` / NaN -> ``None`` (unlabeled).
    An unknown label is returned unchanged, for validation to reject with its name.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        flat = np.asarray(value, dtype=object).ravel()
        if flat.size == 0:
            return None
        value = flat[0]
        if isinstance(value, (list, tuple, np.ndarray)):
            return normalise_label(value)
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value).strip()
    key = text.lower().replace("_", "-").replace(" ", "-")
    if key in _LABEL_LOOKUP:
        return _LABEL_LOOKUP[key]
    return _LABEL_LOOKUP.get(key.replace("-", ""), text)
