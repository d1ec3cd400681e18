"""CSV wafer maps from wafer test: die lists (one row per die: lot, wafer, x, y, bin) and
matrix CSVs (one row per row of dies, one field per die).

With ``layout: auto`` (the default) a file whose first line holds only numbers and blanks is a
matrix (``layout: matrix`` / ``die_list`` force one reading): one wafer, a blank field or a
code in ``null_bins`` (default 0) is no die, bins map to pass/fail as in die lists; the wafer is
named by the file (lot = file name without suffix, wafer ``1``). Anything else is a die list:

Column names are matched case-insensitively against configurable synonyms; the delimiter is
sniffed from the header unless given. Text is UTF-8 (a BOM is fine); each line is one die. A bin in
``pass_bins`` is a pass die; with ``fail_bins`` empty every
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
from waferflow.data.parsers.base import (
    DELIMITERS,
    FileRejected,
    ParseResult,
    Reject,
    field_count_reason,
    normalise_label,
    side_problem,
    split_line,
)
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
    null_bins: tuple[int, ...] = (0,)  # matrix CSV: codes that mean "no die" (a blank field always does)
    layout: str = "auto"  # auto | die_list | matrix


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
        raise FileRejected(
            path,
            f"CSV header lacks column(s) {missing} (looked for "
            f"{ {n: (opts.columns.get(n),) if n in opts.columns else _SYNONYMS[n] for n in missing} }); "
            f"header is {header}",
            field="header",
        )
    return found


def _decode(blob: bytes, path: Path, what: str) -> str:
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            path,
            f"{what} is not UTF-8 text (byte {blob[exc.start]:#04x} at offset {exc.start}); save the file as UTF-8 CSV",
            field="encoding",
        ) from None


def _lines(path: Path) -> tuple[list[bytes], str]:
    """The file's physical lines (bytes, without line ends) and the decoded header line."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise FileRejected(path, f"cannot read file ({exc})") from None
    if blob.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRejected(path, "UTF-16 text; save the file as UTF-8 CSV", field="encoding")
    lines = blob.removeprefix(b"\xef\xbb\xbf").splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise FileRejected(path, "empty file")
    return lines, _decode(lines[0], path, "the header line")


def _integer(text: str) -> int | None:
    """``'12'`` and ``'12.0'`` -> 12; anything else (``'x'``, ``'1.5'``, ``'nan'``) -> None."""
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return int(value) if value.is_integer() else None


def _die_code(b: int, opts: CsvOptions) -> int | None:
    """Pass / fail for a bin, or ``None`` when it is in neither ``pass_bins`` nor a non-empty ``fail_bins``."""
    if b in opts.pass_bins:
        return DIE_PASS
    if not opts.fail_bins or b in opts.fail_bins:
        return DIE_FAIL
    return None


def _is_matrix(header: list[str]) -> bool:
    """A first line of numbers and blanks only (at least one number): a matrix CSV, not a header."""
    fields = [f.strip() for f in header]
    return any(fields) and all(not f or _integer(f) is not None for f in fields)


def parse_matrix(path: Path, lines: list[bytes], delimiter: str, opts: CsvOptions) -> ParseResult:
    """One wafer from a matrix CSV; a line or field that cannot be read rejects the wafer, naming it."""
    rows: list[list[int]] = []
    for line_no, blob in enumerate(lines, start=1):
        text = _decode(blob, path, f"line {line_no}")
        if not text.strip() and line_no == len(lines):
            continue
        row = []
        for col, value in enumerate(split_line(text, delimiter), start=1):
            value = value.strip()
            b = None if not value else _integer(value)
            if value and b is None:
                return ParseResult(
                    rejects=[Reject(str(path), str(line_no), f"column {col}", f"not a bin code: {value!r}", raw=text)]
                )
            if b is None or b in opts.null_bins:
                row.append(DIE_NONE)
            elif (code := _die_code(b, opts)) is None:
                reason = f"bin {b} is in neither pass_bins nor fail_bins (nor null_bins)"
                return ParseResult(rejects=[Reject(str(path), str(line_no), f"column {col}", reason, raw=text)])
            else:
                row.append(code)
        rows.append(row)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        width = max(widths, key=[len(r) for r in rows].count)
        bad = next(i for i, r in enumerate(rows, start=1) if len(r) != width)
        reason = f"{len(rows[bad - 1])} field(s), most lines {width}: a matrix CSV needs one field per die column"
        return ParseResult(rejects=[Reject(str(path), str(bad), None, reason)])
    if problem := side_problem(len(rows), len(rows[0])):
        raise FileRejected(path, problem)
    record = WaferRecord(
        die_grid=np.array(rows, dtype=np.uint8),
        lot_id=path.stem,
        wafer_id="1",
        source="csv_matrix",
        source_ref=f"{path}#lines 1-{len(rows)}",
    )
    return ParseResult(records=[record])


def parse_csv(path: str | Path, options: CsvOptions | None = None) -> ParseResult:
    """Parse a CSV die list into one canonical record per (lot, wafer), or a matrix CSV into one.

    The file is read line by line (one die per line): a line that is not UTF-8, has an
    unbalanced quote or the wrong number of fields is rejected with its line number and the rest
    of the file is kept; a wafer whose dies span more than :data:`MAX_SIDE` is rejected whole.
    """
    path = Path(path)
    opts = options or CsvOptions()
    lines, header_text = _lines(path)
    delimiter = opts.delimiter
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(header_text, delimiters=DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","
    try:
        header = split_line(header_text, delimiter)
    except csv.Error as exc:
        raise FileRejected(path, f"unparseable CSV header ({exc})", field="header") from None
    if opts.layout == "matrix" or (opts.layout == "auto" and _is_matrix(header)):
        return parse_matrix(path, lines, delimiter, opts)
    cols = _resolve_columns(header, opts, path)
    at = {name: header.index(col) for name, col in cols.items()}
    result = ParseResult()
    good_rows = []
    # Line numbers as a person sees them in an editor: header is line 1.
    for line_no, blob in enumerate(lines[1:], start=2):
        line = str(line_no)
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            result.rejects.append(
                Reject(
                    str(path),
                    line,
                    None,
                    f"not UTF-8 text (byte {blob[exc.start]:#04x} at column {exc.start + 1})",
                    raw=blob.decode("utf-8", "replace"),
                )
            )
            continue
        if not text.strip():
            continue
        try:
            fields = split_line(text, delimiter)
        except csv.Error as exc:
            result.rejects.append(Reject(str(path), line, None, f"malformed CSV line ({exc})", raw=text))
            continue
        if len(fields) != len(header):
            result.rejects.append(
                Reject(str(path), line, None, field_count_reason(len(fields), text, len(header), delimiter), raw=text)
            )
            continue
        rec = {name: fields[i].strip() for name, i in at.items()}
        numbers = {n: _integer(rec[n]) for n in ("x", "y", "bin")}
        bad = next((n for n in ("x", "y", "bin") if numbers[n] is None), None)
        if bad:
            result.rejects.append(Reject(str(path), line, cols[bad], f"not an integer: {fields[at[bad]]!r}", raw=text))
            continue
        if not rec["lot"] or not rec["wafer"]:
            name = "lot" if not rec["lot"] else "wafer"
            result.rejects.append(Reject(str(path), line, cols[name], "empty", raw=text))
            continue
        b = int(numbers["bin"])
        code = _die_code(b, opts)
        if code is None:
            result.rejects.append(
                Reject(str(path), line, cols["bin"], f"bin {b} is in neither pass_bins nor fail_bins", raw=text)
            )
            continue
        good_rows.append(
            (
                rec["lot"],
                rec["wafer"],
                int(numbers["x"]),
                int(numbers["y"]),
                code,
                line_no,
                text,
                rec.get("label"),
                rec.get("product"),
            )
        )
    if not good_rows:
        if not result.rejects:
            raise FileRejected(path, "no die rows")
        return result
    dies = pd.DataFrame(good_rows, columns=["lot", "wafer", "x", "y", "code", "line", "raw", "label", "product"])
    dup = dies.duplicated(["lot", "wafer", "x", "y"], keep="first")
    for _, d in dies[dup].iterrows():
        result.rejects.append(
            Reject(
                str(path),
                str(d["line"]),
                f"{cols['x']},{cols['y']}",
                f"duplicate die ({d['x']}, {d['y']}) in wafer {d['lot']}/{d['wafer']}",
                raw=d["raw"],
            )
        )
    dies = dies[~dup]
    for (lot, wafer), group in dies.groupby(["lot", "wafer"], sort=False):
        xs, ys = group["x"].to_numpy(), group["y"].to_numpy()
        if problem := side_problem(int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)):
            extremes = sorted(
                {int(group["line"].iloc[a]) for a in (xs.argmin(), xs.argmax(), ys.argmin(), ys.argmax())}
            )
            result.rejects.append(
                Reject(
                    str(path),
                    f"{group['line'].min()}-{group['line'].max()}",
                    f"{cols['x']},{cols['y']}",
                    f"wafer {lot}/{wafer}: {problem} (x {xs.min()}.."
                    f"{xs.max()}, y {ys.min()}..{ys.max()}; extreme dies on lines {extremes})",
                )
            )
            continue
        grid = np.full((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), DIE_NONE, np.uint8)
        rows = (ys.max() - ys) if opts.flip_y else (ys - ys.min())
        grid[rows, xs - xs.min()] = group["code"].to_numpy()
        labels = {normalise_label(v) for v in group["label"] if v not in (None, "")}
        if len(labels) > 1:
            result.rejects.append(
                Reject(
                    str(path),
                    f"{group['line'].min()}-{group['line'].max()}",
                    cols["label"],
                    f"wafer {lot}/{wafer} has conflicting labels {sorted(map(str, labels))}",
                )
            )
            continue
        products = [p for p in group["product"] if p not in (None, "")]
        result.records.append(
            WaferRecord(
                die_grid=grid,
                lot_id=lot,
                wafer_id=wafer,
                label=labels.pop() if labels else None,
                product=products[0] if products else None,
                source="csv",
                source_ref=f"{path}#lines {group['line'].min()}-{group['line'].max()}",
                attrs={"x_min": int(xs.min()), "y_min": int(ys.min())},
            )
        )
    return result
