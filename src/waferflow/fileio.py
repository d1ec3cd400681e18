"""Atomic file writes: every output goes to a unique temporary file beside it, then is renamed.

A reader never sees a half-written file; a writer killed mid-write leaves the previous file (or
none) and at most a stray ``.<name>.<random>.tmp``; two writers of one path leave one whole file
(the last rename wins) instead of an interleaved, unreadable one. The temporary file sits in the
target's folder so the rename never crosses file systems.

Example:
    >>> from waferflow.fileio import atomic_path, write_json
    >>> write_json("/tmp/example.json", {"macro_f1": 0.73})
    >>> with atomic_path("/tmp/example.csv") as tmp:
    ...     _ = tmp.write_text("lot_id,wafer_id\\n")
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_text", "write_bytes", "write_json", "save_figure"]

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it


@contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename.

    Raises ``IsADirectoryError`` before anything is written when ``path`` is a folder. On an
    error inside the block the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; outputs get the usual mode
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_json(
    path: str | Path, payload: Any, indent: int | None = 2, sort_keys: bool = True, default: Any = None
) -> Path:
    """``payload`` as JSON with a trailing newline (keys sorted unless told otherwise)."""
    return write_text(path, json.dumps(payload, indent=indent, sort_keys=sort_keys, default=default) + "\n")


def save_figure(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` through a temporary file (the format comes from ``path``'s suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", **savefig_kwargs)
    return path
