"""The canonical wafer-map record and its lossless Parquet storage.

Every parser emits :class:`WaferRecord`; every later stage reads the Parquet table written by
:func:`write_records`. Die grids and masks are stored as raw ``uint8`` bytes with their height
and width, so any grid size, square or not, comes back bit for bit.

Example:
    >>> import numpy as np
    >>> from waferflow.data.records import WaferRecord, write_records, read_records
    >>> rec = WaferRecord(die_grid=np.array([[0, 1], [2, 1]], np.uint8), lot_id="L1", wafer_id="1")
    >>> write_records([rec], "/tmp/example.parquet")
    >>> read_records("/tmp/example.parquet")[0].die_grid.tolist()
    [[0, 1], [2, 1]]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from waferflow.fileio import atomic_path

__all__ = [
    "WaferRecord",
    "SCHEMA",
    "records_to_table",
    "table_to_records",
    "write_records",
    "read_records",
    "read_frame",
    "grid_from_row",
    "mask_from_row",
]

SCHEMA = pa.schema(
    [
        pa.field("lot_id", pa.string(), nullable=False),
        pa.field("wafer_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("die_grid", pa.binary(), nullable=False),
        pa.field("defect_mask", pa.binary()),
        pa.field("product", pa.string()),
        pa.field("die_size", pa.float64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_ref", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("split_hint", pa.string()),
        pa.field("attrs", pa.string()),
    ],
    metadata={b"waferflow.schema": b"1"},
)


@dataclass
class WaferRecord:
    """One wafer: its die grid, optional per-die defect mask, label and provenance.

    Args:
        die_grid: 2-D ``uint8`` array, 0 = no die, 1 = pass, 2 = fail (255 marks a source value
            that was not a valid code; validation rejects such wafers).
        lot_id: Lot the wafer belongs to.
        wafer_id: Wafer identifier, unique within its lot.
        label: One of :data:`waferflow.classes.CLASSES`, or ``None`` when unlabeled.
        defect_mask: Optional 2-D ``uint8`` array of the grid's shape: 0 = background,
            1..8 = pattern class index (see :func:`waferflow.classes.mask_index`).
        product: Product / device name, when known.
        die_size: Die size as given by the source (WM-811K's ``dieSize``), when known.
        source: Which parser or generator produced the record (``lswmd``, ``synth`` ...).
        source_ref: Where exactly it came from (``file#row``), for error messages and audits.
        timestamp: Test time, when known.
        split_hint: ``train`` / ``test`` when the source fixes the split (WM-811K's
            ``trianTestLabel``, the generator's test set), else ``None``.
        attrs: Free JSON-serialisable metadata (generator parameters, mixed patterns ...).
    """

    die_grid: np.ndarray
    lot_id: str
    wafer_id: str
    label: str | None = None
    defect_mask: np.ndarray | None = None
    product: str | None = None
    die_size: float | None = None
    source: str = "unknown"
    source_ref: str | None = None
    timestamp: datetime | None = None
    split_hint: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grid = np.asarray(self.die_grid)
        if grid.ndim != 2:
            raise ValueError(f"die_grid must be 2-D, got shape {grid.shape}")
        if grid.dtype != np.uint8:
            raise TypeError(f"die_grid must be uint8, got {grid.dtype}")
        self.die_grid = np.ascontiguousarray(grid)
        if self.defect_mask is not None:
            mask = np.ascontiguousarray(np.asarray(self.defect_mask))
            if mask.shape != grid.shape:
                raise ValueError(f"defect_mask shape {mask.shape} != die_grid shape {grid.shape}")
            if mask.dtype != np.uint8:
                raise TypeError(f"defect_mask must be uint8, got {mask.dtype}")
            self.defect_mask = mask

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.die_grid.shape)  # type: ignore[return-value]

    @property
    def key(self) -> tuple[str, str]:
        return (self.lot_id, self.wafer_id)


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None or pd.isna(ts):
        return None
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def records_to_table(records: Iterable[WaferRecord]) -> pa.Table:
    """Convert records to an Arrow table in :data:`SCHEMA`."""
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for r in records:
        h, w = r.die_grid.shape
        cols["lot_id"].append(str(r.lot_id))
        cols["wafer_id"].append(str(r.wafer_id))
        cols["label"].append(r.label)
        cols["height"].append(h)
        cols["width"].append(w)
        cols["die_grid"].append(r.die_grid.tobytes())
        cols["defect_mask"].append(None if r.defect_mask is None else r.defect_mask.tobytes())
        cols["product"].append(r.product)
        cols["die_size"].append(None if r.die_size is None else float(r.die_size))
        cols["source"].append(r.source)
        cols["source_ref"].append(r.source_ref)
        cols["timestamp"].append(_utc(r.timestamp))
        cols["split_hint"].append(r.split_hint)
        cols["attrs"].append(json.dumps(r.attrs, sort_keys=True) if r.attrs else None)
    return pa.table(cols, schema=SCHEMA)


def grid_from_row(row: Any) -> np.ndarray:
    """Die grid of one table row (a mapping or a pandas row with height/width/die_grid)."""
    return np.frombuffer(row["die_grid"], dtype=np.uint8).reshape(int(row["height"]), int(row["width"]))


def mask_from_row(row: Any) -> np.ndarray | None:
    """Defect mask of one table row, or ``None``."""
    blob = row["defect_mask"]
    if blob is None or (isinstance(blob, float) and np.isnan(blob)):
        return None
    return np.frombuffer(blob, dtype=np.uint8).reshape(int(row["height"]), int(row["width"]))


def _none_if_na(value: Any) -> Any:
    return None if value is None or (not isinstance(value, (bytes, str)) and pd.isna(value)) else value


def table_to_records(table: pa.Table | pd.DataFrame) -> list[WaferRecord]:
    """Convert a table in :data:`SCHEMA` back to records (arrays are copies, writable)."""
    rows = table.to_pylist() if isinstance(table, pa.Table) else table.to_dict("records")
    out = []
    for row in rows:
        mask = mask_from_row(row)
        attrs = _none_if_na(row.get("attrs"))
        ts = _none_if_na(row.get("timestamp"))
        out.append(
            WaferRecord(
                die_grid=grid_from_row(row).copy(),
                defect_mask=None if mask is None else mask.copy(),
                lot_id=row["lot_id"],
                wafer_id=row["wafer_id"],
                label=_none_if_na(row.get("label")),
                product=_none_if_na(row.get("product")),
                die_size=_none_if_na(row.get("die_size")),
                source=row.get("source") or "unknown",
                source_ref=_none_if_na(row.get("source_ref")),
                timestamp=_utc(ts),
                split_hint=_none_if_na(row.get("split_hint")),
                attrs=json.loads(attrs) if attrs else {},
            )
        )
    return out


def write_records(records: Iterable[WaferRecord] | pa.Table, path: str | Path) -> Path:
    """Write records (or a table in :data:`SCHEMA`) to a Parquet file atomically, creating parent dirs."""
    table = records if isinstance(records, pa.Table) else records_to_table(records)
    with atomic_path(path) as tmp:
        pq.write_table(table.cast(SCHEMA), tmp, compression="zstd")
    return Path(path)


def read_frame(path: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read one or more canonical Parquet files as a pandas DataFrame (grids as bytes)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    tables = [pq.read_table(p, schema=SCHEMA) for p in paths]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return table.to_pandas()


def read_records(path: str | Path | Sequence[str | Path]) -> list[WaferRecord]:
    """Read canonical Parquet file(s) back into records."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    out: list[WaferRecord] = []
    for p in paths:
        out.extend(table_to_records(pq.read_table(p, schema=SCHEMA)))
    return out
