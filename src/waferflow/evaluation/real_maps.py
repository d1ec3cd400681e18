"""Real labeled wafer maps: a fixed lot split into a *dev* part and a *test* part.

Real maps (WM-811K's ``LSWMD.pkl`` layout, or any labeled source ingest reads) are judged apart
from generated ones. Wafers of one lot share their process conditions, so the split is by lot:
a lot's part is a salted SHA-256 of its name, fixed in code (:data:`SPLIT_SALT`), independent of
which other lots a file holds and of any seed. The protocol:

* **dev** lots are the ones to look at: compare distributions with the generator, study errors,
  and let the promotion gate choose between model versions;
* **test** lots are only reported (``metrics/evaluate_real.json``, ``benchmarks/sim_to_real.py``):
  nothing is tuned or selected on them.

Example:
    >>> real_part("lot47542"), real_part("lot47544")
    ('test', 'dev')
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd

from waferflow.data.arrays import IGNORE_INDEX, WaferArrays
from waferflow.data.ingest import discover, ingest
from waferflow.data.records import read_frame
from waferflow.data.split import resize_frame

__all__ = ["SPLIT_SALT", "PARTS", "real_part", "load_real_frame", "real_arrays"]

SPLIT_SALT = "waferflow-real-split"
PARTS = ("dev", "test")


def real_part(lot_id: str) -> str:
    """``dev`` or ``test``: half the lots each, by a salted hash of the lot name."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{lot_id}".encode()).hexdigest()
    return PARTS[int(digest, 16) % 2]


def load_real_frame(data_dir: Path, part: str | None = None) -> tuple[pd.DataFrame | None, dict]:
    """The labeled real wafers under ``data_dir`` (canonical frame, original grid sizes) with a
    ``part`` column, only ``part`` when given; ``(None, {"available": False, "reason": ...})`` when
    there are none."""
    if part is not None and part not in PARTS:
        raise ValueError(f"unknown real-data part {part!r}; choose from {PARTS}")
    if not data_dir.is_dir() or not discover([data_dir])[0]:
        return None, {"available": False, "reason": f"no supported files under {data_dir}"}
    with tempfile.TemporaryDirectory() as tmp:
        report = ingest([data_dir], Path(tmp) / "real.parquet", Path(tmp) / "q", progress=False)
        frame = read_frame(Path(tmp) / "real.parquet")
    frame = frame[frame["label"].notna()].copy()
    frame["part"] = [real_part(lot) for lot in frame["lot_id"]]
    if part is not None:
        frame = frame[frame["part"] == part]
    if frame.empty:
        return None, {
            "available": False,
            "reason": f"{report.records} real wafers, none labeled" + (f" in the {part} lots" if part else ""),
        }
    return frame.reset_index(drop=True), {
        "available": True,
        "source": str(data_dir),
        "part": part or "all",
        "wafers": int(len(frame)),
        "lots": int(frame["lot_id"].nunique()),
        "ingest_rejected": report.rejected,
        "split": f"by lot: sha256('{SPLIT_SALT}:' + lot) % 2 -> {PARTS[0]} | {PARTS[1]}",
    }


def real_arrays(data_dir: Path, size: tuple[int, int]) -> tuple[dict[str, WaferArrays] | None, dict]:
    """Both parts of :func:`load_real_frame` as model inputs of ``size`` (``{"dev": ..., "test": ...}``),
    class labels only: real maps carry no per-die mask, so their mask targets are ignored."""
    frame, info = load_real_frame(data_dir)
    if frame is None:
        return None, info
    parts = {}
    for part in PARTS:
        arrays = WaferArrays.from_frame(resize_frame(frame[frame["part"] == part], size))
        arrays.targets[:] = IGNORE_INDEX
        parts[part] = arrays
    return parts, info
