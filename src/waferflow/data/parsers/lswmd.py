"""WM-811K ``LSWMD.pkl``: a pickled pandas DataFrame, one wafer per row.

Columns as distributed: ``waferMap`` (2-D uint8 array per cell), ``dieSize`` (float),
``lotName`` (``'lot1'``), ``waferIndex`` (float, 1..25), ``trianTestLabel`` (nested array
``[['Training']]`` / ``[['Test']]``, empty for unlabeled wafers) and ``failureType`` (nested
array ``[['Edge-Ring']]``, empty for unlabeled wafers). The original file was written by an
old pandas (``pandas.indexes`` module paths) and possibly Python 2; ``pandas.read_pickle``
maps both, and the same data re-saved by a newer pandas reads the same way.

Pickles are read with an allow-list (:mod:`waferflow.data.parsers.safe_pickle`): numpy arrays and
pandas frames are rebuilt, and a pickle that names anything else is rejected without running it.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from waferflow.data.parsers.base import FileRejected, ParseResult, Reject, RowRejected, normalise_label, to_die_grid
from waferflow.data.parsers.safe_pickle import PickleRefused, load_frame
from waferflow.data.records import WaferRecord

__all__ = ["parse_lswmd", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("waferMap", "lotName", "waferIndex")
_SPLITS = {"training": "train", "test": "test"}


def _load(path: Path) -> pd.DataFrame:
    try:
        frame = load_frame(path)
    except PickleRefused as exc:
        raise FileRejected(path, str(exc)) from None
    # A cut or damaged pickle fails in many ways: short reads, absurd lengths, bad opcodes.
    except (EOFError, pickle.UnpicklingError, MemoryError, OverflowError, struct.error, IndexError, KeyError) as exc:
        raise FileRejected(path, f"truncated or corrupt pickle ({exc.__class__.__name__}: {exc})") from None
    except (ModuleNotFoundError, AttributeError, ImportError, TypeError, ValueError) as exc:
        raise FileRejected(
            path, f"pickle does not hold a readable DataFrame ({exc.__class__.__name__}: {exc})"
        ) from None
    if not isinstance(frame, pd.DataFrame):
        raise FileRejected(path, f"pickle holds a {type(frame).__name__}, expected a pandas DataFrame")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise FileRejected(path, f"missing column(s) {missing}; found {list(frame.columns)}", field=",".join(missing))
    return frame


def _wafer_id(value) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            raise RowRejected("waferIndex", "missing wafer index")
        if float(value).is_integer():
            return str(int(value))
    return str(value)


def parse_lswmd(path: str | Path, progress: bool = False) -> ParseResult:
    """Parse an ``LSWMD.pkl``-style DataFrame pickle into canonical records."""
    path = Path(path)
    frame = _load(path)
    result = ParseResult()
    has = set(frame.columns)
    rows = frame.itertuples(index=True, name=None)
    cols = ["__index__", *frame.columns]
    for values in tqdm(rows, total=len(frame), desc=f"ingest {path.name}", disable=not progress, unit="wafer"):
        row = dict(zip(cols, values))
        ref = f"{path}#{row['__index__']}"
        try:
            grid = to_die_grid(row["waferMap"], "waferMap")
            lot = row["lotName"]
            if lot is None or (isinstance(lot, float) and np.isnan(lot)) or str(lot).strip() == "":
                raise RowRejected("lotName", "missing lot name")
            split = normalise_label(row["trianTestLabel"]) if "trianTestLabel" in has else None
            die_size = row.get("dieSize")
            result.records.append(
                WaferRecord(
                    die_grid=grid,
                    lot_id=str(lot),
                    wafer_id=_wafer_id(row["waferIndex"]),
                    label=normalise_label(row["failureType"]) if "failureType" in has else None,
                    die_size=None if die_size is None or pd.isna(die_size) else float(die_size),
                    source="lswmd",
                    source_ref=ref,
                    split_hint=_SPLITS.get(str(split).lower()) if split else None,
                )
            )
        except RowRejected as exc:
            result.rejects.append(Reject(str(path), str(row["__index__"]), exc.field, exc.reason))
    return result
