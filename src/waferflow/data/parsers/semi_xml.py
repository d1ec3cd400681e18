"""SEMI map XML: G85 wafer maps (revisions 0703 and 1101) and E142 substrate maps.

A G85 file holds ``<Map>`` elements (under ``<Maps>`` or alone), each with a ``<Device>`` that
declares ``BinType`` (``ASCII``: a character per die; ``Decimal``: whitespace-separated numbers;
``HexaDecimal``: two hex digits per die), ``NullBin`` (no die there), ``<Bin BinCode BinQuality
BinCount>`` and the rows (``<Data><Row>``, or ``<Row>`` straight under ``<Device>`` as some
writers do). An E142 file (``<MapData>``) holds ``<SubstrateMap>`` elements whose
``<BinCodeMap>`` carries the same three ideas (``BinDefinition`` and ``BinCode`` rows). Element
names are matched without their XML namespace (files come with and without a default one).

Die codes: ``NullBin`` -> no die (0); a bin declared ``Pass`` (or listed in ``pass_bins``, which
then replaces the file's declaration) -> pass (1); any other declared bin -> fail (2). A code
the file does not declare is never guessed silently: the map is rejected naming the codes,
unless ``undeclared_bins: fail`` says such codes are fails (then counted in the record's
``attrs``). Codes compare by value, so a pass bin ``00`` is a pass, not "no die". Declared
``BinCount`` that disagree with the data are common in real files: the map is kept, the
disagreement recorded in ``attrs["bin_count_mismatch"]`` and logged. Declared ``Rows`` /
``Columns`` that disagree with the data, ragged rows and unsupported bin types reject the map;
an E142 map of a strip or tray (not a wafer) is rejected with that reason.

XML is parsed with ``defusedxml``: DTDs, entities and external references are refused (a map
has none), so a hostile file cannot expand or fetch anything.

Example:
    >>> result = parse_semi_xml("maps/lot42.xml")  # doctest: +SKIP
    >>> result.records[0].die_grid.shape  # doctest: +SKIP
    (35, 40)
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from waferflow.classes import DIE_FAIL, DIE_NONE, DIE_PASS
from waferflow.data.parsers.base import FileRejected, ParseResult, Reject, RowRejected, side_problem
from waferflow.data.records import WaferRecord

__all__ = ["SemiXmlOptions", "parse_semi_xml", "BIN_TYPES"]

log = logging.getLogger(__name__)

BIN_TYPES = ("ASCII", "Decimal", "HexaDecimal")
UNDECLARED = ("reject", "fail")
MAX_BYTES = 256 * 1024 * 1024  # a 2048 x 2048 hex map is ~17 MB of text; more is not a map


@dataclass(frozen=True)
class SemiXmlOptions:
    """How bins map to pass/fail (``ingest.semi_xml`` in ``params.yaml``).

    Args:
        pass_bins: Bin codes, as the files write them (``"G"``, ``"00"``, ``"1"``), that are pass
            dies; empty: the bins each file declares ``BinQuality="Pass"``.
        undeclared_bins: ``reject`` (default) rejects a map holding a code no bin declares;
            ``fail`` counts such dies as fails.
    """

    pass_bins: tuple[str, ...] = ()
    undeclared_bins: str = "reject"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(node: Element, name: str) -> list[Element]:
    return [child for child in node if _local(child.tag) == name]


def _child(node: Element, name: str) -> Element | None:
    return next(iter(_children(node, name)), None)


def _code_key(text: str, bin_type: str) -> int | str:
    """A bin code as a comparable value: ``"001"`` == ``"1"`` in decimal, ``"0a"`` == ``"0A"`` in hex."""
    text = text.strip()
    if bin_type == "Decimal":
        return int(text)
    if bin_type == "HexaDecimal":
        return int(text, 16)
    return text


def _split_row(text: str, bin_type: str) -> list[str]:
    text = (text or "").strip()
    if bin_type == "ASCII":
        return text.split() if any(c.isspace() for c in text) else list(text)
    if bin_type == "Decimal":
        return text.split()
    if any(c.isspace() for c in text):  # hex with separators
        return text.split()
    if len(text) % 2:
        raise RowRejected("Row", f"hexadecimal row of odd length {len(text)} (two digits per die)")
    return [text[i : i + 2] for i in range(0, len(text), 2)]


@dataclass
class _MapSpec:
    """What G85 and E142 say about one substrate, in common terms."""

    wafer_id: str
    lot_id: str | None
    product: str | None
    bin_type: str
    null_bin: str
    bins: list[dict]  # {"code", "quality", "count"}
    rows: list[str]
    declared_shape: tuple[int | None, int | None]
    attrs: dict
    timestamp: datetime | None = None


def _die_grid(spec: _MapSpec, opts: SemiXmlOptions) -> tuple[np.ndarray, dict]:
    """The 0/1/2 grid of one map and what the reader noticed (mismatched counts, undeclared codes)."""
    if spec.bin_type not in BIN_TYPES:
        raise RowRejected("BinType", f"bin type {spec.bin_type!r} is not supported (supported: {', '.join(BIN_TYPES)})")
    try:
        cells = [[_code_key(c, spec.bin_type) for c in _split_row(row, spec.bin_type)] for row in spec.rows]
        null = _code_key(spec.null_bin, spec.bin_type)
        declared = {_code_key(b["code"], spec.bin_type): b for b in spec.bins}
        passing = (
            {_code_key(c, spec.bin_type) for c in opts.pass_bins}
            if opts.pass_bins
            else {k for k, b in declared.items() if b["quality"].lower() == "pass"}
        )
    except ValueError as exc:
        raise RowRejected("BinCode", f"not a {spec.bin_type} bin code ({exc})") from None
    if not cells or not cells[0]:
        raise RowRejected("Row", "the map has no rows")
    widths = Counter(len(r) for r in cells)
    if len(widths) > 1:
        (width, _), *_ = widths.most_common(1)
        bad = next(i for i, r in enumerate(cells) if len(r) != width)
        raise RowRejected("Row", f"ragged rows: row {bad} has {len(cells[bad])} dies, most rows {width}")
    height, width = len(cells), len(cells[0])
    if problem := side_problem(height, width):
        raise RowRejected("Rows,Columns", problem)
    rows_decl, cols_decl = spec.declared_shape
    if (rows_decl is not None and rows_decl != height) or (cols_decl is not None and cols_decl != width):
        raise RowRejected(
            "Rows,Columns",
            f"declares {rows_decl} x {cols_decl} dies but the data holds {height} x {width} (truncated file?)",
        )
    counts = Counter(c for row in cells for c in row)
    undeclared = {c: n for c, n in counts.items() if c != null and c not in declared and c not in passing}
    notes: dict = {}
    if undeclared and opts.undeclared_bins != "fail":
        raise RowRejected(
            "BinCode",
            f"code(s) no <Bin> declares: {', '.join(f'{c!r} x{n}' for c, n in sorted(undeclared.items(), key=str))}; "
            "set ingest.semi_xml.undeclared_bins: fail to count them as fail dies",
        )
    if undeclared:
        notes["undeclared_bins"] = {str(c): n for c, n in undeclared.items()}
    mismatch = {
        str(b["code"]): {"declared": int(b["count"]), "found": counts.get(k, 0)}
        for k, b in declared.items()
        if b["count"] is not None and int(b["count"]) != counts.get(k, 0)
    }
    if mismatch:
        notes["bin_count_mismatch"] = mismatch
    lookup = {c: (DIE_NONE if c == null else DIE_PASS if c in passing else DIE_FAIL) for c in counts}
    grid = np.array([[lookup[c] for c in row] for row in cells], dtype=np.uint8)
    return grid, notes


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _g85_specs(root: Element) -> list[_MapSpec]:
    maps = [root] if _local(root.tag) == "Map" else _children(root, "Map")
    specs = []
    for i, wafer in enumerate(maps):
        device = _child(wafer, "Device")
        if device is None:
            raise FileRejected("", f"<Map> {i} has no <Device>", field="Device")
        data = _child(device, "Data")
        rows = _children(data if data is not None else device, "Row")
        created = device.get("CreateDate")
        stamp = None
        if created and created[:14].isdigit():
            stamp = datetime.strptime(created[:14], "%Y%m%d%H%M%S")
        specs.append(
            _MapSpec(
                wafer_id=wafer.get("SubstrateId") or wafer.get("WaferId") or str(i),
                lot_id=device.get("LotId") or None,
                product=device.get("ProductId") or None,
                bin_type=device.get("BinType", ""),
                null_bin=device.get("NullBin", ""),
                bins=[
                    {"code": b.get("BinCode", ""), "quality": b.get("BinQuality", ""), "count": _int(b.get("BinCount"))}
                    for b in _children(device, "Bin")
                ],
                rows=[r.text or "" for r in rows],
                declared_shape=(_int(device.get("Rows")), _int(device.get("Columns"))),
                attrs={
                    "format": "SEMI G85",
                    "format_revision": wafer.get("FormatRevision"),
                    "orientation": device.get("Orientation"),
                    "origin_location": device.get("OriginLocation"),
                },
                timestamp=stamp,
            )
        )
    return specs


def _e142_specs(root: Element) -> list[_MapSpec]:
    holder = _child(root, "SubstrateMaps")
    maps = _children(holder if holder is not None else root, "SubstrateMap")
    specs = []
    for i, sub in enumerate(maps):
        kind = sub.get("SubstrateType", "Wafer")
        code_map = next((n for n in sub.iter() if _local(n.tag) == "BinCodeMap"), None)
        if code_map is None:
            raise FileRejected("", f"<SubstrateMap> {i} has no <BinCodeMap>", field="BinCodeMap")
        definitions = _child(code_map, "BinDefinitions")
        specs.append(
            _MapSpec(
                wafer_id=sub.get("SubstrateId") or str(i),
                lot_id=None,
                product=None,
                bin_type=code_map.get("BinType", ""),
                null_bin=code_map.get("NullBin", ""),
                bins=[
                    {"code": b.get("BinCode", ""), "quality": b.get("BinQuality", ""), "count": _int(b.get("BinCount"))}
                    for b in (_children(definitions, "BinDefinition") if definitions is not None else [])
                ],
                rows=[r.text or "" for r in _children(code_map, "BinCode")],
                declared_shape=(None, None),
                attrs={
                    "format": "SEMI E142",
                    "substrate_type": kind,
                    "layout": sub.get("LayoutSpecifier"),
                    "orientation": sub.get("Orientation"),
                    "origin_location": sub.get("OriginLocation"),
                    "axis_direction": sub.get("AxisDirection"),
                },
            )
        )
    return specs


def parse_semi_xml(path: str | Path, options: SemiXmlOptions | None = None) -> ParseResult:
    """Every wafer map of a SEMI G85 or E142 file; a map that cannot be read is rejected, the others kept."""
    path = Path(path)
    opts = options or SemiXmlOptions()
    if opts.undeclared_bins not in UNDECLARED:
        raise ValueError(f"undeclared_bins must be one of {UNDECLARED}, got {opts.undeclared_bins!r}")
    if path.stat().st_size > MAX_BYTES:
        raise FileRejected(path, f"{path.stat().st_size} bytes: larger than any wafer map ({MAX_BYTES} bytes)")
    try:
        root = fromstring(path.read_bytes())
    except DefusedXmlException as exc:
        raise FileRejected(path, f"XML with a DTD, entity or external reference is refused ({exc})") from None
    except ParseError as exc:
        raise FileRejected(path, f"not well-formed XML ({exc})") from None
    kind = _local(root.tag)
    try:
        if kind in ("Maps", "Map"):
            specs, source = _g85_specs(root), "semi_g85"
        elif kind == "MapData":
            specs, source = _e142_specs(root), "semi_e142"
        else:
            raise FileRejected(
                path, f"not a SEMI G85 or E142 map: root element <{kind}> (expected <Maps>, <Map> or <MapData>)"
            )
    except FileRejected as exc:
        raise FileRejected(path, exc.reason, field=exc.field) from None
    if not specs:
        raise FileRejected(path, f"no wafer map in the file (<{kind}> holds no <Map>/<SubstrateMap>)")
    result = ParseResult()
    for i, spec in enumerate(specs):
        where = f"{path}#{i}"
        if spec.attrs.get("substrate_type", "Wafer").lower() != "wafer":
            result.rejects.append(
                Reject(
                    str(path),
                    str(i),
                    "SubstrateType",
                    f"an E142 map of a {spec.attrs['substrate_type']!r}, not "
                    "a wafer: waferflow reads wafer maps only (strip and tray maps have no wafer pattern)",
                )
            )
            continue
        try:
            grid, notes = _die_grid(spec, opts)
        except RowRejected as exc:
            result.rejects.append(Reject(str(path), str(i), exc.field, exc.reason))
            continue
        if notes.get("bin_count_mismatch"):
            log.warning("%s: declared bin counts differ from the data: %s", where, notes["bin_count_mismatch"])
        attrs = {k: v for k, v in {**spec.attrs, **notes}.items() if v is not None}
        result.records.append(
            WaferRecord(
                die_grid=grid,
                lot_id=spec.lot_id or path.stem,
                wafer_id=spec.wafer_id,
                product=spec.product,
                source=source,
                source_ref=where,
                timestamp=spec.timestamp,
                attrs=attrs,
            )
        )
    return result
