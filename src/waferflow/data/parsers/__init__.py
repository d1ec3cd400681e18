"""Parsers from every supported source format to canonical :class:`WaferRecord` s.

``parse_file`` picks the parser by extension: ``.pkl``/``.pickle`` (WM-811K ``LSWMD.pkl``),
``.npz`` (MixedWM38 and similar), ``.csv``/``.tsv``/``.txt`` (die lists), ``.png``/``.tif``/
``.tiff``/``.bmp`` (die-level images), ``.xml`` (SEMI G85 and E142 map files), ``.stdf``/``.std``
(STDF V4 wafer sort data) and ``.parquet`` (canonical tables, e.g. the generator's).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from waferflow.data.parsers.base import (
    FileRejected,
    ParseResult,
    Reject,
    RowRejected,
    normalise_label,
    side_problem,
    to_die_grid,
)
from waferflow.data.parsers.csv_dies import CsvOptions, parse_csv
from waferflow.data.parsers.image import ImageOptions, parse_image
from waferflow.data.parsers.lswmd import parse_lswmd
from waferflow.data.parsers.npz import NpzOptions, parse_npz
from waferflow.data.parsers.semi_xml import SemiXmlOptions, parse_semi_xml
from waferflow.data.parsers.stdf import StdfOptions, parse_stdf
from waferflow.data.records import SCHEMA, table_to_records

__all__ = [
    "ParserOptions",
    "parse_file",
    "format_of",
    "SUPPORTED_SUFFIXES",
    "FileRejected",
    "ParseResult",
    "Reject",
    "RowRejected",
    "normalise_label",
    "to_die_grid",
    "parse_canonical",
    "CsvOptions",
    "ImageOptions",
    "NpzOptions",
    "SemiXmlOptions",
    "StdfOptions",
]

log = logging.getLogger(__name__)

_FORMATS = {
    ".pkl": "lswmd",
    ".pickle": "lswmd",
    ".npz": "npz",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".png": "image",
    ".tif": "image",
    ".tiff": "image",
    ".bmp": "image",
    ".xml": "semi_xml",
    ".stdf": "stdf",
    ".std": "stdf",
    ".parquet": "canonical",
}
SUPPORTED_SUFFIXES = tuple(_FORMATS)


@dataclass(frozen=True)
class ParserOptions:
    csv: CsvOptions = field(default_factory=CsvOptions)
    npz: NpzOptions = field(default_factory=NpzOptions)
    image: ImageOptions = field(default_factory=ImageOptions)
    semi_xml: SemiXmlOptions = field(default_factory=SemiXmlOptions)
    stdf: StdfOptions = field(default_factory=StdfOptions)


def format_of(path: str | Path) -> str | None:
    """The format name for a file, or ``None`` when no parser handles it."""
    return _FORMATS.get(Path(path).suffix.lower())


def _row_problem(row: dict) -> tuple[str, str] | None:
    """(field, reason) when one canonical row cannot be a wafer record, else ``None``."""
    for name in ("lot_id", "wafer_id", "height", "width", "die_grid"):
        if row[name] is None:
            return name, "missing"
    h, w = row["height"], row["width"]
    if h <= 0 or w <= 0:
        return ("height" if h <= 0 else "width"), f"grid of {h} x {w} dies: sides must be positive"
    if problem := side_problem(h, w):
        return "height,width", problem
    for name in ("die_grid", "defect_mask"):
        if row[name] is not None and len(row[name]) != h * w:
            return name, f"{len(row[name])} bytes for a {h} x {w} grid ({h * w} expected)"
    if row["attrs"]:
        try:
            json.loads(row["attrs"])
        except ValueError as exc:
            return "attrs", f"not JSON ({exc})"
    return None


def parse_canonical(path: str | Path) -> ParseResult:
    """A waferflow Parquet table; a row that cannot be a record is rejected, the others kept."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileRejected(path, f"not a readable Parquet file ({exc})") from None
    missing = [n for n in SCHEMA.names if n not in table.column_names and not SCHEMA.field(n).nullable]
    if missing:
        raise FileRejected(path, f"not a waferflow table: missing column(s) {missing}", field=",".join(missing))
    for name in SCHEMA.names:
        if name not in table.column_names:
            table = table.append_column(SCHEMA.field(name), pa.nulls(len(table), SCHEMA.field(name).type))
    try:
        table = table.select(SCHEMA.names).cast(pa.schema([f.with_nullable(True) for f in SCHEMA]))
    except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise FileRejected(path, f"waferflow table with columns of the wrong type ({exc})") from None
    result, keep = ParseResult(), []
    checked = table.select(["lot_id", "wafer_id", "height", "width", "die_grid", "defect_mask", "attrs"]).to_pylist()
    for i, row in enumerate(checked):
        if problem := _row_problem(row):
            result.rejects.append(Reject(str(path), str(i), *problem))
        else:
            keep.append(i)
    result.records = table_to_records(table.take(keep).cast(SCHEMA))
    return result


def parse_file(path: str | Path, options: ParserOptions | None = None, progress: bool = False) -> ParseResult:
    """Parse one file with the parser its extension names; raises :class:`FileRejected`.

    Whatever goes wrong inside a parser (an unreadable path, a symlink loop, a bug meeting a file
    no test foresaw) becomes a :class:`FileRejected` naming the file and the error, so one bad
    file never ends a batch."""
    path = Path(path)
    opts = options or ParserOptions()
    fmt = format_of(path)
    if fmt is None:
        raise FileRejected(path, f"unsupported file type {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        if path.stat().st_size == 0:
            raise FileRejected(path, "empty file")
        if fmt == "lswmd":
            return parse_lswmd(path, progress=progress)
        if fmt == "npz":
            return parse_npz(path, opts.npz)
        if fmt == "csv":
            return parse_csv(path, opts.csv)
        if fmt == "image":
            return parse_image(path, opts.image)
        if fmt == "semi_xml":
            return parse_semi_xml(path, opts.semi_xml)
        if fmt == "stdf":
            return parse_stdf(path, opts.stdf)
        return parse_canonical(path)
    except FileRejected:
        raise
    except OSError as exc:
        raise FileRejected(path, f"cannot read file ({exc.__class__.__name__}: {exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - MemoryError, RecursionError ...: a reject, never a crash of the batch
        log.warning("unexpected error parsing %s", path, exc_info=True)
        raise FileRejected(path, f"unexpected error while parsing ({exc.__class__.__name__}: {exc})") from None
