"""SEMI G85 / E142 map XML: the real samples in ../shared/formats (when present) with their quirks,
and files the tests write for each rule of the reader."""

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT
from waferflow.data.parsers import FileRejected, ParserOptions, parse_file
from waferflow.data.parsers.semi_xml import SemiXmlOptions, parse_semi_xml

FORMATS = PROJECT_ROOT.parent / "shared" / "formats"
needs_samples = pytest.mark.skipif(not FORMATS.is_dir(), reason="no ../shared/formats beside the project")


def counts(grid: np.ndarray) -> list[int]:
    return np.bincount(grid.ravel(), minlength=3).tolist()


@needs_samples
@pytest.mark.parametrize("name", ["ex.xml", "ex2.xml"])
def test_g85_0703_ascii_samples_namespace_and_no_data_wrapper(name):
    # SOURCE.txt: 35 x 40, G = pass (830 dies), X = fail (256); ex.xml declares 255 X; ex2.xml has no <Data>
    result = parse_file(FORMATS / "g85-0703-xyz" / name)
    (rec,) = result.records
    assert not result.rejects and rec.source == "semi_g85" and rec.die_grid.shape == (35, 40)
    assert counts(rec.die_grid)[1:] == [830, 256]
    assert rec.lot_id == "0050000" and rec.wafer_id == "123456705F2" and rec.product == "DEVICE01"
    assert rec.timestamp.year == 2005
    mismatch = rec.attrs.get("bin_count_mismatch")
    assert mismatch == ({"X": {"declared": 255, "found": 256}} if name == "ex.xml" else None)


@needs_samples
@pytest.mark.parametrize("name", ["SEMI_G85_1101_ALL.xml", "SEMI_G85_1101_MIN.xml"])
def test_g85_1101_hex_pass_bin_00_is_a_pass_not_no_die(name):
    (rec,) = parse_file(FORMATS / "g85-1101-hex" / name).records
    assert rec.die_grid.shape == (60, 60)
    assert counts(rec.die_grid) == [792, 2765, 43]  # 00 = pass, DE and AD = fail, FF = no die


@needs_samples
def test_g85_decimal_and_e142_samples():
    (dec,) = parse_file(FORMATS / "g85-e142-examples/g85_1101_decimal_example.xml").records
    assert dec.die_grid.shape == (15, 16) and counts(dec.die_grid) == [56, 119, 65]
    assert dec.attrs["bin_count_mismatch"]["0"] == {"declared": 116, "found": 65}
    (e142,) = parse_file(FORMATS / "g85-e142-examples/e142_v0105_wafer_hex_example.xml").records
    assert e142.source == "semi_e142" and e142.die_grid.shape == (18, 21)
    assert counts(e142.die_grid) == [217, 0, 161]  # the only declared bin, 00, is a fail
    assert e142.attrs["layout"] == "WaferLayout/Devices"


def g85(
    rows: list[str], bins: str, bin_type: str = "HexaDecimal", null: str = "FF", extra: str = "", wrapper: bool = True
) -> str:
    body = "".join(f"<Row><![CDATA[{r}]]></Row>" for r in rows)
    if wrapper:
        body = f"<Data>{body}</Data>"
    return (
        f'<?xml version="1.0"?><Maps xmlns="http://www.semi.org"><Map WaferId="W7" FormatRevision="SEMI G85-1101">'
        f'<Device LotId="LOT9" BinType="{bin_type}" NullBin="{null}" {extra}>{bins}{body}</Device></Map></Maps>'
    )


HEX_BINS = '<Bin BinCode="00" BinQuality="Pass"/><Bin BinCode="0A" BinQuality="Fail" BinCount="1"/>'


def write(tmp_path: Path, text: str, name: str = "map.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_written_hex_map_codes_compare_by_value(tmp_path):
    path = write(tmp_path, g85(["FF00FF", "000a00", "FF00FF"], HEX_BINS, extra='Rows="3" Columns="3"'))
    (rec,) = parse_file(path).records
    assert rec.die_grid.tolist() == [[0, 1, 0], [1, 2, 1], [0, 1, 0]]  # "0a" is the declared "0A"
    assert rec.lot_id == "LOT9" and rec.wafer_id == "W7" and "bin_count_mismatch" not in rec.attrs


def test_undeclared_code_rejects_the_map_unless_configured_as_fail(tmp_path):
    path = write(tmp_path, g85(["FF00FF", "00B700", "FF00FF"], HEX_BINS))
    result = parse_file(path)
    assert not result.records and result.rejects[0].field == "BinCode"
    assert "183" in result.rejects[0].reason and "undeclared_bins: fail" in result.rejects[0].reason  # 0xB7
    opts = ParserOptions(semi_xml=SemiXmlOptions(undeclared_bins="fail"))
    (rec,) = parse_file(path, opts).records
    assert rec.die_grid[1, 1] == 2 and rec.attrs["undeclared_bins"] == {"183": 1}


def test_pass_bins_option_replaces_the_files_declaration(tmp_path):
    bins = (
        '<Bin BinCode="1" BinQuality="Pass"/><Bin BinCode="2" BinQuality="Fail"/><Bin BinCode="9" BinQuality="Fail"/>'
    )
    path = write(tmp_path, g85(["255 001 002", "009 001 255"], bins, bin_type="Decimal", null="255"))
    assert parse_file(path).records[0].die_grid.tolist() == [[0, 1, 2], [2, 1, 0]]
    opts = ParserOptions(semi_xml=SemiXmlOptions(pass_bins=("1", "9")))  # bin 9 is a retest pass in this fab
    assert parse_file(path, opts).records[0].die_grid.tolist() == [[0, 1, 2], [1, 1, 0]]


@pytest.mark.parametrize(
    "rows, extra, reason",
    [
        (["FF00FF", "0000", "FF00FF"], "", "ragged rows: row 1 has 2 dies"),
        (["FF00FF", "FF00FF"], 'Rows="3" Columns="3"', "declares 3 x 3 dies but the data holds 2 x 3"),
        (["FF00F", "FF00FF"], "", "odd length"),
        ([], "", "no rows"),
    ],
)
def test_broken_maps_are_rejected_with_the_reason(tmp_path, rows, extra, reason):
    result = parse_file(write(tmp_path, g85(rows, HEX_BINS, extra=extra)))
    assert not result.records and reason in result.rejects[0].reason
    assert result.rejects[0].file.endswith("map.xml") and result.rejects[0].row == "0"


def test_unsupported_bin_type_and_foreign_xml_are_clear_rejects(tmp_path):
    result = parse_file(write(tmp_path, g85(["AAAA"], HEX_BINS, bin_type="Integer2")))
    assert "bin type 'Integer2' is not supported" in result.rejects[0].reason
    with pytest.raises(FileRejected, match=r"root element <svg>"):
        parse_file(write(tmp_path, '<svg xmlns="http://www.w3.org/2000/svg"/>', "drawing.xml"))
    with pytest.raises(FileRejected, match="not well-formed XML"):
        parse_file(write(tmp_path, "<Maps><Map>", "cut.xml"))


def test_entities_are_refused_never_expanded(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE Maps [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<Maps><Map><Device BinType="ASCII" NullBin="0"><Row>&b;</Row></Device></Map></Maps>'
    )
    with pytest.raises(FileRejected, match="DTD, entity or external reference is refused"):
        parse_file(write(tmp_path, bomb))
    external = '<?xml version="1.0"?><!DOCTYPE Maps [<!ENTITY x SYSTEM "file:///etc/passwd">]><Maps>&x;</Maps>'
    with pytest.raises(FileRejected, match="refused"):
        parse_file(write(tmp_path, external, "ext.xml"))


def test_e142_strip_map_is_rejected_and_the_wafer_beside_it_kept(tmp_path):
    def sub(kind: str, sid: str) -> str:
        return (
            f'<SubstrateMap SubstrateType="{kind}" SubstrateId="{sid}" LayoutSpecifier="L/Devices"><Overlay>'
            '<BinCodeMap BinType="HexaDecimal" NullBin="FF"><BinDefinitions>'
            '<BinDefinition BinCode="01" BinQuality="Pass"/><BinDefinition BinCode="02" BinQuality="Fail"/>'
            "</BinDefinitions><BinCode>FF01FF</BinCode><BinCode>010201</BinCode><BinCode>FF01FF</BinCode>"
            "</BinCodeMap></Overlay></SubstrateMap>"
        )

    text = (
        '<MapData xmlns="urn:semiorg:xsd.E142-1.V0105.SubstrateMap"><SubstrateMaps>'
        f"{sub('Strip', 'S1')}{sub('Wafer', 'W2')}</SubstrateMaps></MapData>"
    )
    result = parse_semi_xml(write(tmp_path, text, "e142.xml"))
    (rec,) = result.records
    assert rec.wafer_id == "W2" and rec.die_grid.tolist() == [[0, 1, 0], [1, 2, 1], [0, 1, 0]]
    (rej,) = result.rejects
    assert rej.row == "0" and rej.field == "SubstrateType" and "'Strip', not a wafer" in rej.reason
