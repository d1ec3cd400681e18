"""NumPy ``.npz`` archives of wafer maps, e.g. MixedWM38 (``arr_0``: N x 52 x 52 maps,
``arr_1``: N x 8 one-hot/multi-hot labels).

Maps are found under the first present key of ``maps_keys``; labels under ``labels_keys``.
Labels may be one-hot / multi-hot rows (columns named by ``label_names``; an all-zero row is
``none``), integer indices into ``label_names``, or strings. A multi-hot row (a mixed-type
defect, which the nine-class taxonomy has no name for) is kept unlabeled with its pattern
names in ``attrs["labels"]``. Object arrays (e.g. ragged grids) are refused: .npz stores
them as pickles, and waferflow never unpickles .npz content.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from waferflow.data.parsers.base import (
    FileRejected,
    ParseResult,
    Reject,
    RowRejected,
    normalise_label,
    side_problem,
    to_die_grid,
)
from waferflow.data.records import WaferRecord

__all__ = ["NpzOptions", "parse_npz", "MIXEDWM38_LABELS"]

# Column order of MixedWM38's one-hot label vectors.
MIXEDWM38_LABELS = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Scratch", "Random")


@dataclass(frozen=True)
class NpzOptions:
    maps_keys: tuple[str, ...] = ("arr_0", "maps", "waferMap", "x")
    labels_keys: tuple[str, ...] = ("arr_1", "labels", "failureType", "y")
    label_names: tuple[str, ...] = field(default=MIXEDWM38_LABELS)


def _label_of(value, names: tuple[str, ...]) -> tuple[str | None, list[str]]:
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return normalise_label(value), []
    if arr.ndim == 0:
        idx = int(arr)
        if not 0 <= idx < len(names):
            raise RowRejected("labels", f"label index {idx} outside 0..{len(names) - 1}")
        return normalise_label(names[idx]), []
    if arr.ndim != 1 or arr.shape[0] != len(names):
        raise RowRejected("labels", f"label vector of shape {arr.shape} does not match {len(names)} label_names")
    hot = [normalise_label(names[i]) for i in np.flatnonzero(arr > 0.5)]
    if not hot:
        return "none", []
    if len(hot) == 1:
        return hot[0], []
    return None, [str(h) for h in hot]


def _array(archive, path: Path, key: str) -> np.ndarray:
    """``archive[key]`` without pickle: an object array (e.g. ragged grids) can only be stored in
    an .npz as a pickle, and unpickling runs whatever the file says, so the file is rejected."""
    try:
        return archive[key]
    except ValueError as exc:
        raise FileRejected(
            path,
            f"array {key!r} is an object array ({exc}); waferflow never unpickles .npz "
            "content, which could run code: store the grids as one N x H x W integer "
            "array (pad with 0 = no die) and labels as integers or strings",
            field=key,
        ) from None


def _check_grid_sides(archive, path: Path, key: str) -> None:
    """Reject maps wider than :data:`MAX_SIDE` from the .npy header, before the array is read."""
    try:
        member = f"{key}.npy" if f"{key}.npy" in archive.zip.namelist() else key
        with archive.zip.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape = read_header(fh)[0]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise FileRejected(path, f"array {key!r} has no readable .npy header ({exc})", field=key) from None
    if len(shape) == 3 and (problem := side_problem(shape[1], shape[2])):
        raise FileRejected(path, f"maps array {key!r} of shape {shape}: {problem}", field=key)


def parse_npz(path: str | Path, options: NpzOptions | None = None) -> ParseResult:
    """Parse an ``.npz`` archive of wafer maps (and optional labels) into canonical records."""
    path = Path(path)
    opts = options or NpzOptions()
    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and say so
        raise FileRejected(path, "not a zip archive (an .npz is a zip of .npy arrays)")
    try:
        archive = np.load(path, allow_pickle=False)
        keys = list(archive.files)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise FileRejected(path, f"not a readable .npz archive ({exc.__class__.__name__}: {exc})") from None
    maps_key = next((k for k in opts.maps_keys if k in keys), None)
    if maps_key is None:
        raise FileRejected(path, f"no maps array: none of {list(opts.maps_keys)} in {keys}", field="maps")
    _check_grid_sides(archive, path, maps_key)
    maps = _array(archive, path, maps_key)
    labels_key = next((k for k in opts.labels_keys if k in keys), None)
    labels = _array(archive, path, labels_key) if labels_key else None
    if labels is not None and len(labels) != len(maps):
        raise FileRejected(path, f"{len(maps)} maps but {len(labels)} labels", field=labels_key)
    if maps.ndim != 3:
        raise FileRejected(path, f"maps array {maps_key!r} must be N x H x W, got shape {maps.shape}", field=maps_key)
    result = ParseResult()
    for i in range(len(maps)):
        try:
            grid = to_die_grid(maps[i], maps_key)
            label, mixed = _label_of(labels[i], opts.label_names) if labels is not None else (None, [])
            result.records.append(
                WaferRecord(
                    die_grid=grid,
                    lot_id=path.stem,
                    wafer_id=str(i),
                    label=label,
                    source="npz",
                    source_ref=f"{path}#{i}",
                    attrs={"labels": mixed} if mixed else {},
                )
            )
        except RowRejected as exc:
            result.rejects.append(Reject(str(path), str(i), exc.field, exc.reason))
    return result
