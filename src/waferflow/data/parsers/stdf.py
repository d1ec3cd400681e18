"""STDF V4 wafer sort data: one wafer map per WIR ... WRR, a die per PRR.

A wafer sort STDF file (``.stdf``, ``.std``; gzip/bz2/xz compressed ones too, recognised by their
content) is read with Semi-ATE's ``Semi_ATE.STDF`` reader (MIT). The records used:

* ``FAR`` — must open the file: CPU type (byte order) and ``STDF_VER`` 4; anything else rejects
  the file (waferflow does not guess at a byte stream);
* ``MIR`` — ``LOT_ID`` (the record's lot; the file name when empty) and ``PART_TYP`` (product);
* ``WIR`` / ``WRR`` — one wafer each, per test head: ``WAFER_ID`` (WRR's wins when both name
  it), ``START_T`` (the record's time); WRR's ``PART_CNT`` that disagrees with the dies read is
  kept in ``attrs["part_count_mismatch"]`` and logged, as G85's bin counts are;
* ``PIR`` / ``PRR`` — one die: ``X_COORD``, ``Y_COORD``, ``HARD_BIN``, ``SOFT_BIN``, ``PART_FLG``;
* ``HBR`` / ``SBR`` — each bin's declared pass/fail (``HBIN_PF`` / ``SBIN_PF``: ``P`` or ``F``);
* ``WCR`` — ``POS_X`` / ``POS_Y``: which way coordinates grow, to draw the map as the prober saw it.

Pass or fail, the documented rule (``ingest.stdf`` in ``params.yaml``):

1. with ``pass_bins`` set, a die passes when its bin (``bin: hard`` or ``soft``) is listed, else
   it fails — the fab's own bin table replaces what the file says;
2. otherwise a die passes or fails by its PRR's pass/fail bit (``PART_FLG`` bit 3);
3. when that bit is marked invalid (bit 4, as testers write for a part with no decision), by the
   pass/fail the file's HBR/SBR declares for the die's bin;
4. a die none of these decides is never guessed: the wafer is rejected naming the bins, unless
   ``undeclared_bins: fail`` counts them as fails (then listed in ``attrs["undeclared_bins"]``).

A die tested again (a PRR with the same X/Y later in the wafer: a retest, or ``PART_FLG`` bits
0/1) keeps its last result, as the final bin of a sort flow is; how many were retested is in
``attrs["retested_dies"]``. Positions never tested are "no die" (0). A PRR without wafer
coordinates (X or Y = -32768: final test of packaged parts, not wafer sort), a wafer with no
PRR, and a wafer whose WRR never comes (a truncated file) are rejected with that reason; the
file's other wafers are kept.

Example:
    >>> result = parse_stdf("sort/lot42.stdf")  # doctest: +SKIP
    >>> [r.wafer_id for r in result.records]  # doctest: +SKIP
    ['01', '02']
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from waferflow.classes import DIE_FAIL, DIE_NONE, DIE_PASS
from waferflow.data.parsers.base import FileRejected, ParseResult, Reject, RowRejected, side_problem
from waferflow.data.records import WaferRecord

__all__ = ["StdfOptions", "parse_stdf", "BIN_FIELDS"]

log = logging.getLogger(__name__)

BIN_FIELDS = ("hard", "soft")
UNDECLARED = ("reject", "fail")
MISSING_COORD = -32768
OF_INTEREST = ["MIR", "WIR", "WRR", "PRR", "HBR", "SBR", "WCR"]
# PART_FLG as Semi-ATE gives it: eight '0'/'1' characters, most significant bit first
FLAG_FAILED = 7 - 3  # bit 3: the part failed
FLAG_INVALID = 7 - 4  # bit 4: no pass/fail decision


@dataclass(frozen=True)
class StdfOptions:
    """How bins map to pass/fail (``ingest.stdf`` in ``params.yaml``).

    Args:
        pass_bins: Bin numbers that pass; empty: each die's PRR pass/fail bit, then the bin's
            HBR/SBR declaration (see the module's rule).
        bin: ``hard`` (``HARD_BIN``, default) or ``soft`` (``SOFT_BIN``): the bin ``pass_bins``
            and the declarations refer to.
        undeclared_bins: ``reject`` (default) rejects a wafer with dies no rule decides; ``fail``
            counts them as fails.
    """

    pass_bins: tuple[int, ...] = ()
    bin: str = "hard"
    undeclared_bins: str = "reject"


@dataclass
class _Wafer:
    """One open WIR: its dies by (x, y), and what the reader noticed."""

    index: int
    wafer_id: str | None
    started: int | None
    dies: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)  # (x, y) -> (flag, bin)
    retested: int = 0
    problem: tuple[str, str] | None = None  # (field, reason): the wafer is rejected when closed


def _check_far(path: Path) -> None:
    """Reject anything that does not open with an STDF V4 FAR (compressed files: the library checks)."""
    with path.open("rb") as handle:
        head = handle.read(6)
    if head[:2] in (b"\x1f\x8b", b"BZ") or head[:6] == b"\xfd7zXZ\x00":
        return
    if len(head) < 6 or head[2:4] != b"\x00\x0a":
        raise FileRejected(path, "not an STDF file: it does not begin with a FAR record (type 0, sub-type 10)")
    if head[4] not in (1, 2):
        raise FileRejected(path, f"STDF FAR with CPU_TYPE {head[4]}: byte order unknown (1 or 2 expected)")
    if head[5] != 4:
        raise FileRejected(path, f"STDF version {head[5]}: only STDF V4 is read", field="STDF_VER")


def _grid(wafer: _Wafer, declared: dict[int, str], opts: StdfOptions, flip_x: bool, flip_y: bool):
    """The 0/1/2 grid of one wafer and the bins no rule decided."""
    xs = np.array([x for x, _ in wafer.dies])
    ys = np.array([y for _, y in wafer.dies])
    height, width = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
    if problem := side_problem(height, width):
        raise RowRejected("X_COORD,Y_COORD", f"dies span x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}: {problem}")
    grid = np.full((height, width), DIE_NONE, dtype=np.uint8)
    undecided: Counter = Counter()
    passing = set(opts.pass_bins)
    for (x, y), (flag, bin_no) in wafer.dies.items():
        if passing:
            code = DIE_PASS if bin_no in passing else DIE_FAIL
        elif flag[FLAG_INVALID] == "0":
            code = DIE_FAIL if flag[FLAG_FAILED] == "1" else DIE_PASS
        elif declared.get(bin_no) in ("P", "F"):
            code = DIE_PASS if declared[bin_no] == "P" else DIE_FAIL
        else:
            undecided[bin_no] += 1
            code = DIE_FAIL
        row = (ys.max() - y) if flip_y else (y - ys.min())
        col = (xs.max() - x) if flip_x else (x - xs.min())
        grid[row, col] = code
    if undecided and opts.undeclared_bins != "fail":
        raise RowRejected(
            "PART_FLG",
            f"{sum(undecided.values())} dies with no pass/fail decision (PART_FLG bit 4) in {opts.bin} bin(s) "
            f"{sorted(undecided)} that no {'HBR' if opts.bin == 'hard' else 'SBR'} declares P or F; set "
            "ingest.stdf.pass_bins, or ingest.stdf.undeclared_bins: fail to count them as fail dies",
        )
    return grid, {str(b): n for b, n in sorted(undecided.items())}


def parse_stdf(path: str | Path, options: StdfOptions | None = None) -> ParseResult:
    """Every wafer of an STDF V4 wafer sort file; a wafer that cannot be read is rejected, the others kept."""
    from Semi_ATE.STDF import STDFError, records_from_file

    path = Path(path)
    opts = options or StdfOptions()
    if opts.bin not in BIN_FIELDS:
        raise ValueError(f"bin must be one of {BIN_FIELDS}, got {opts.bin!r}")
    if opts.undeclared_bins not in UNDECLARED:
        raise ValueError(f"undeclared_bins must be one of {UNDECLARED}, got {opts.undeclared_bins!r}")
    _check_far(path)
    bin_field, bin_record = ("HARD_BIN", "HBR") if opts.bin == "hard" else ("SOFT_BIN", "SBR")
    lot_id = product = None
    declared: dict[int, str] = {}
    flip_x = flip_y = False
    open_wafers: dict[int, _Wafer] = {}  # by test head
    closed: list[tuple[_Wafer, dict]] = []  # (wafer, its WRR's values)
    count = 0
    try:
        for rec in records_from_file(str(path), of_interest=list(OF_INTEREST)):
            kind = rec.id
            if kind == "MIR":
                lot_id = (rec.get_value("LOT_ID") or "").strip() or None
                product = (rec.get_value("PART_TYP") or "").strip() or None
            elif kind == "WCR":
                flip_x = rec.get_value("POS_X") == "L"  # x grows leftwards
                flip_y = rec.get_value("POS_Y") == "U"  # y grows upwards: the top row is the largest y
            elif kind == bin_record:
                verdict = (rec.get_value(f"{bin_record[0]}BIN_PF") or " ").strip().upper()
                if verdict in ("P", "F"):
                    declared[int(rec.get_value(f"{bin_record[0]}BIN_NUM"))] = verdict
            elif kind == "WIR":
                head = int(rec.get_value("HEAD_NUM"))
                if head in open_wafers:  # a WIR with no WRR before the next: the earlier wafer never ended
                    wafer = open_wafers.pop(head)
                    wafer.problem = wafer.problem or ("WRR", "the wafer has no WRR before the next WIR")
                    closed.append((wafer, {}))
                wafer_id = (rec.get_value("WAFER_ID") or "").strip() or None
                open_wafers[head] = _Wafer(count, wafer_id, rec.get_value("START_T") or None)
                count += 1
            elif kind == "PRR":
                wafer = open_wafers.get(int(rec.get_value("HEAD_NUM")))
                if wafer is None:
                    continue  # a part outside any wafer (e.g. a package test record): not a wafer die
                x, y = int(rec.get_value("X_COORD")), int(rec.get_value("Y_COORD"))
                if MISSING_COORD in (x, y):
                    wafer.problem = wafer.problem or (
                        "X_COORD,Y_COORD",
                        "a PRR without wafer coordinates (-32768): package test data, not a wafer sort map",
                    )
                    continue
                wafer.retested += (x, y) in wafer.dies
                wafer.dies[(x, y)] = (list(rec.get_value("PART_FLG")), int(rec.get_value(bin_field)))
            elif kind == "WRR":
                wafer = open_wafers.pop(int(rec.get_value("HEAD_NUM")), None)
                if wafer is not None:
                    values = {"wafer_id": (rec.get_value("WAFER_ID") or "").strip(), "parts": rec.get_value("PART_CNT")}
                    closed.append((wafer, values))
        end = ("WRR", "the file ends before the wafer's WRR (truncated file?)")
    except (STDFError, struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        if not closed:
            raise FileRejected(path, f"unreadable STDF record ({exc.__class__.__name__}: {exc})") from None
        end = ("record", f"an unreadable STDF record inside the wafer ({exc.__class__.__name__}: {exc})")
    for wafer in open_wafers.values():  # wafers the file never closed: rejected, the closed ones kept
        wafer.problem = wafer.problem or end
        closed.append((wafer, {}))
    if not closed:
        raise FileRejected(path, "no wafer in the file (no WIR record): not wafer sort data", field="WIR")
    result = ParseResult()
    for wafer, wrr in sorted(closed, key=lambda item: item[0].index):
        where = str(wafer.index)
        wafer_id = wrr.get("wafer_id") or wafer.wafer_id or str(wafer.index)
        if wafer.problem is None and not wafer.dies:
            wafer.problem = ("PRR", "the wafer has no die (no PRR between its WIR and WRR)")
        if wafer.problem is not None:
            result.rejects.append(Reject(str(path), where, *wafer.problem))
            continue
        try:
            grid, undecided = _grid(wafer, declared, opts, flip_x, flip_y)
        except RowRejected as exc:
            result.rejects.append(Reject(str(path), where, exc.field, exc.reason))
            continue
        attrs: dict = {"format": "STDF V4", "bin": opts.bin, "dies_tested": len(wafer.dies)}
        if wafer.retested:
            attrs["retested_dies"] = wafer.retested
        if undecided:
            attrs["undeclared_bins"] = undecided
        parts = wrr.get("parts")
        if parts not in (None, 4294967295) and int(parts) != len(wafer.dies) + wafer.retested:
            attrs["part_count_mismatch"] = {"declared": int(parts), "found": len(wafer.dies) + wafer.retested}
            log.warning("%s#%s: WRR PART_CNT differs from the PRRs read: %s", path, where, attrs["part_count_mismatch"])
        result.records.append(
            WaferRecord(
                die_grid=grid,
                lot_id=lot_id or path.stem,
                wafer_id=wafer_id,
                product=product,
                source="stdf",
                source_ref=f"{path}#{where}",
                timestamp=datetime.fromtimestamp(wafer.started, timezone.utc).replace(tzinfo=None)
                if wafer.started
                else None,
                attrs=attrs,
            )
        )
    return result
