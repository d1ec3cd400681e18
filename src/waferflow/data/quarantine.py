"""Quarantine: where rejected files, rows and wafers go, each with the reason it was rejected.

Nothing a user gave is modified or deleted: a rejected file is referenced (path, size,
SHA-256), a rejected CSV row is copied verbatim, and a wafer rejected by validation is written
as a canonical record beside the reasons, so it can be fixed and re-ingested.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import pandas as pd

from waferflow.data.parsers.base import Reject
from waferflow.fileio import atomic_path

__all__ = ["write_rejects", "file_fingerprint", "reason_kind"]

REJECT_COLUMNS = ["stage", "file", "row", "field", "reason", "raw", "sha256", "size_bytes"]


def file_fingerprint(path: str | Path) -> tuple[str | None, int | None]:
    """SHA-256 and size of a file, so a rejected input can be recognised later."""
    p = Path(path)
    if not p.is_file():
        return None, None
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest(), p.stat().st_size


def reason_kind(reason: str) -> str:
    """A reason without its particulars, for counting (``'not an integer: 'x''`` -> ``'not an integer'``)."""
    for sep in (" (", ":", ";"):
        reason = reason.split(sep, 1)[0]
    return reason.strip()


def write_rejects(rejects: Iterable[Reject], path: str | Path) -> Path:
    """Write rejects to a CSV (always, with a header even when empty)."""
    rows = []
    for r in rejects:
        row = r.as_dict()
        if r.row is None:  # a whole file: fingerprint it instead of copying it
            row["sha256"], row["size_bytes"] = file_fingerprint(r.file)
        rows.append(row)
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=REJECT_COLUMNS).to_csv(tmp, index=False)
    return Path(path)
