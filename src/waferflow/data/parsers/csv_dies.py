"""CSV die lists from wafer test: one row per die (lot, wafer, x, y, bin).

Column names are matched case-insensitively against configurable synonyms; the delimiter is
sniffed unless given. A bin in ``pass_bins`` is a pass die; with ``fail_bins`` empty every
other bin fails, otherwise bins in neither list are rejected. Grid rows follow ``y`` (top row
= smallest y unless ``flip_y``), columns follow ``x``; grid cells with no die row are "no die".
Optional columns: a wafer-level ``label`` and ``product``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from waferflow.classes import DIE_FAIL, DIE_NONE, DIE_PASS
from waferflow.data.parsers.base import FileRejected, ParseResult, Reject, normalise_label
from waferflow.data.records import WaferRecord

__all__ = ["CsvOptions", "parse_csv"]

_SYNONYMS = {
    "lot": ("lot", "lot_id", "lotid", "lotname", "lot_name"),
    "wafer": ("wafer", "wafer_id", "waferid", "waferindex", "wafer_index", "slot"),
    "x": ("x", "die_x", "diex", "col", "column"),
    "y": ("y", "die_y", "diey", "row"),
    "bin": ("bin", "hbin", "hard_bin", "sbin", "soft_bin", "bin_code", "bincode"),
    "label": ("label", "failuretype", "failure_type", "pattern"),
    "product": ("product", "device", "part"),
}
_REQUIRED = ("lot", "wafer", "x", "y", "bin")


@dataclass(frozen=True)
class CsvOptions:
    delimiter: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> header in the file
    pass_bins: tuple[int, ...] = (1,)
    fail_bins: tuple[int, ...] = ()
    flip_y: bool = False


def _resolve_columns(header: list[str], opts: CsvOptions, path: Path) -> dict[str, str]:
    lowered = {h.strip().lower(): h for h in header}
    found: dict[str, str] = {}
    for name, synonyms in _SYNONYMS.items():
        wanted = (opts.columns[name].lower(),) if name in opts.columns else synonyms
        hit = next((lowered[s] for s in wanted if s in lowered), None)
        if hit is not None:
            found[name] = hit
    missing = [n for n in _REQUIRED if n not in found]
    if missing:
        raise FileRejected(path, f"CSV header lacks column(s) {missing} (looked for "
                           f"{ {n: (opts.columns.get(n),) if n in opts.columns else _SYNONYMS[n] for n in missing} }); "
                           f"header is {header}", field="header")
    return found


def parse_csv(path: str | Path, options: CsvOptions | None = None) -> ParseResult:
    """Parse a CSV die list into one canonical record per (lot, wafer)."""
    path = Path(path)
    opts = options or CsvOptions()
    try:
        text_head = path.read_text(encoding="utf-8-sig", errors="replace")[:8192]
    except OSError as exc:
        raise FileRejected(path, f"cannot read file ({exc})") from None
    if not text_head.strip():
        raise FileRejected(path, "empty file")
    delimiter = opts.delimiter
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text_head.splitlines()[0], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    try:
        frame = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FileRejected(path, f"unparseable CSV ({exc.__class__.__name__}: {exc})") from None
    cols = _resolve_columns(list(frame.columns), opts, path)
    result = ParseResult()
    # Line numbers as a person sees them in an editor: header is line 1.
    frame["__line__"] = np.arange(2, len(frame) + 2)
    good_rows = []
    for name in ("x", "y", "bin"):
        frame[f"__{name}"] = pd.to_numeric(frame[cols[name]].str.strip(), errors="coerce")
    for rec in frame.to_dict("records"):
        line = str(rec["__line__"])
        raw = delimiter.join(str(rec[c]) for c in frame.columns if not c.startswith("__"))
        bad = next((n for n in ("x", "y", "bin") if pd.isna(rec[f"__{n}"]) or not float(rec[f"__{n}"]).is_integer()), None)
        if bad:
            result.rejects.append(Reject(str(path), line, cols[bad], f"not an integer: {rec[cols[bad]]!r}", raw=raw))
            continue
        if not str(rec[cols["lot"]]).strip() or not str(rec[cols["wafer"]]).strip():
            name = "lot" if not str(rec[cols["lot"]]).strip() else "wafer"
            result.rejects.append(Reject(str(path), line, cols[name], "empty", raw=raw))
            continue
        b = int(rec["__bin"])
        if b in opts.pass_bins:
            code = DIE_PASS
        elif not opts.fail_bins or b in opts.fail_bins:
            code = DIE_FAIL
        else:
            result.rejects.append(Reject(str(path), line, cols["bin"], f"bin {b} is in neither pass_bins nor fail_bins", raw=raw))
            continue
        good_rows.append((str(rec[cols["lot"]]).strip(), str(rec[cols["wafer"]]).strip(), int(rec["__x"]),
                          int(rec["__y"]), code, line, raw, rec.get(cols.get("label", ""), None),
                          rec.get(cols.get("product", ""), None)))
    if not good_rows:
        if not result.rejects:
            raise FileRejected(path, "no die rows")
        return result
    dies = pd.DataFrame(good_rows, columns=["lot", "wafer", "x", "y", "code", "line", "raw", "label", "product"])
    dup = dies.duplicated(["lot", "wafer", "x", "y"], keep="first")
    for _, d in dies[dup].iterrows():
        result.rejects.append(Reject(str(path), d["line"], f"{cols['x']},{cols['y']}",
                                     f"duplicate die ({d['x']}, {d['y']}) in wafer {d['lot']}/{d['wafer']}", raw=d["raw"]))
    dies = dies[~dup]
    for (lot, wafer), group in dies.groupby(["lot", "wafer"], sort=False):
        xs, ys = group["x"].to_numpy(), group["y"].to_numpy()
        grid = np.full((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), DIE_NONE, np.uint8)
        rows = (ys.max() - ys) if opts.flip_y else (ys - ys.min())
        grid[rows, xs - xs.min()] = group["code"].to_numpy()
        labels = {normalise_label(v) for v in group["label"] if v not in (None, "")}
        if len(labels) > 1:
            result.rejects.append(Reject(str(path), f"{group['line'].min()}-{group['line'].max()}", cols["label"],
                                         f"wafer {lot}/{wafer} has conflicting labels {sorted(map(str, labels))}"))
            continue
        products = [p for p in group["product"] if p not in (None, "")]
        result.records.append(
            WaferRecord(
                die_grid=grid, lot_id=lot, wafer_id=wafer, label=labels.pop() if labels else None,
                product=products[0] if products else None, source="csv",
                source_ref=f"{path}#lines {group['line'].min()}-{group['line'].max()}",
                attrs={"x_min": int(xs.min()), "y_min": int(ys.min())},
            )
        )
    return result
