"""Append-only, day-partitioned Parquet log of production predictions.

Every call of :meth:`PredictionLog.append` writes one new file,
``<root>/date=YYYY-MM-DD/part-<HHMMSSffffff>-<uuid>.parquet`` — nothing is ever rewritten, so
concurrent servers cannot clobber each other and a day is one folder to copy or delete. Each row
is one wafer: when, wafer and lot, model version and alias, predicted class and confidence, the
engine's time per wafer of its batch,
the wafer features of :mod:`waferflow.data.features` (what the drift check compares), and the die
grid itself (``die_grid``: the codes as raw ``uint8`` bytes, row-major, with ``grid_rows`` and
``grid_cols``; :func:`logged_grids` reads them back) — so the similar-wafer index can show
production wafers as past wafers (``pipelines/index_log.py``). Plain bytes, never a pickle.
``root`` is a folder or an ``s3://bucket/prefix`` URI (written and read with boto3; endpoint from
``AWS_ENDPOINT_URL`` for MinIO).

A local part is written whole to a hidden ``.part-….tmp`` beside it, then hard-linked to its
name (which refuses to replace a file), so a writer killed mid-write leaves at most a stray temp
file, never a torn part. Writing never fails a prediction: an error is reported (``logging``
warning naming the file and the reason) and counted in :attr:`PredictionLog.errors`. Reading
reads the ``*.parquet`` files not starting with a dot; it skips one it cannot read (say a part
torn by an older writer), reports it the same way and lists it in :attr:`PredictionLog.skipped_parts`.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from waferflow.data.features import FEATURES, wafer_features

__all__ = ["PredictionLog", "BufferedPredictionLog", "LOG_COLUMNS", "logged_grids"]

log = logging.getLogger(__name__)
LOG_COLUMNS = (
    "logged_at",
    "lot_id",
    "wafer_id",
    "model_version",
    "alias",
    "predicted_class",
    "confidence",
    "triage",  # PASS / REVIEW / REJECT (None from an export without a novelty head)
    "novelty",
    "latency_ms",
    *FEATURES,
    "grid_rows",
    "grid_cols",
    "die_grid",  # uint8 die codes, row-major bytes (parts written before it have no such column)
)


class PredictionLog:
    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self.errors = 0
        self.written = 0
        self.skipped_parts: list[str] = []  # the unreadable parts the last read() left out
        self._lock = threading.Lock()  # the shadow engine logs from another thread
        self._s3 = self.root.startswith("s3://")

    def rows(
        self,
        results: list[dict],
        grids: list[np.ndarray],
        alias: str | None,
        when: datetime,
        latency_ms: float | None = None,
    ) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "logged_at": when,
                    "lot_id": r.get("lot_id"),
                    "wafer_id": r.get("wafer_id"),
                    "model_version": r.get("model_version"),
                    "alias": alias,
                    "predicted_class": r["class"],
                    "confidence": r["confidence"],
                    "triage": (r.get("triage") or {}).get("decision"),
                    "novelty": (r.get("triage") or {}).get("novelty"),
                    "latency_ms": latency_ms,
                    **wafer_features(g),
                    "grid_rows": int(np.shape(g)[0]),
                    "grid_cols": int(np.shape(g)[1]),
                    "die_grid": np.ascontiguousarray(g, dtype=np.uint8).tobytes(),
                }
                for r, g in zip(results, grids)
            ],
            columns=list(LOG_COLUMNS),
        )

    def append(
        self,
        results: list[dict],
        grids: list[np.ndarray],
        alias: str | None = None,
        when: datetime | None = None,
        latency_ms: float | None = None,
    ) -> str | None:
        """Log one batch (``latency_ms``: the engine's time per wafer in it); returns where it went,
        or None (reported and counted) when it could not."""
        when = when or datetime.now(timezone.utc)
        return self._write(lambda: self.rows(results, grids, alias, when, latency_ms), len(results), when)

    def _write(self, frame: Callable[[], pd.DataFrame], wafers: int, when: datetime) -> str | None:
        """One new part of ``frame()``'s rows in ``when``'s day (see the module doc)."""
        name = f"date={when:%Y-%m-%d}/part-{when:%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        target = f"{self.root.rstrip('/')}/{name}"
        try:
            buf = io.BytesIO()
            frame().to_parquet(buf, index=False)
            if self._s3:
                bucket, key = _split_s3(target)
                _s3_client().put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
            else:
                _write_new(Path(target), buf.getvalue())
        except Exception as exc:  # noqa: BLE001 - logging must never fail a prediction
            with self._lock:
                self.errors += 1
            log.warning(
                "prediction log: could not write %s (%d wafers): %s: %s", target, wafers, type(exc).__name__, exc
            )
            return None
        with self._lock:
            self.written += wafers
        return target

    def read(self, days: int = 7, end: date | None = None) -> pd.DataFrame:
        """Rows of the last ``days`` days up to ``end`` (default today, UTC), oldest first; parts
        that cannot be read are left out, reported and listed in :attr:`skipped_parts`."""
        end = end or datetime.now(timezone.utc).date()
        wanted = {f"date={end - timedelta(days=k):%Y-%m-%d}" for k in range(days)}
        frames, self.skipped_parts = [], []
        for where, load in self._parts(wanted):
            try:
                frames.append(pd.read_parquet(io.BytesIO(load())))
            except Exception as exc:  # noqa: BLE001 - one torn part must not hide the others
                self.skipped_parts.append(where)
                log.warning("prediction log: skipped unreadable part %s: %s: %s", where, type(exc).__name__, exc)
        if not frames:
            return pd.DataFrame(columns=list(LOG_COLUMNS))
        return pd.concat(frames, ignore_index=True).sort_values("logged_at", kind="stable").reset_index(drop=True)

    def _parts(self, partitions: set[str]) -> Iterator[tuple[str, Callable[[], bytes]]]:
        """(where, read its bytes) for each part of ``partitions``."""
        if self._s3:
            bucket, prefix = _split_s3(self.root.rstrip("/") + "/")
            client = _s3_client()
            for part in sorted(partitions):
                pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}{part}/")
                for page in pages:
                    for obj in page.get("Contents", []):
                        if _is_part(obj["Key"].rpartition("/")[2]):
                            yield f"s3://{bucket}/{obj['Key']}", partial(_s3_body, client, bucket, obj["Key"])
        else:
            for part in sorted(partitions):
                for path in sorted((Path(self.root) / part).glob("*.parquet")):
                    if _is_part(path.name):
                        yield str(path), path.read_bytes


class BufferedPredictionLog(PredictionLog):
    """A :class:`PredictionLog` for a service: an append only keeps what the row needs (no
    features, no Parquet, no file), and a background thread writes what was gathered as one part
    per day every ``flush_seconds``, or sooner once ``max_rows`` wafers wait. A request then pays
    microseconds instead of a Parquet file and an fsync (~10 ms a request on 2 cores). A process
    killed between flushes loses at most ``flush_seconds`` of log rows, never a prediction;
    :meth:`close` writes what is pending (the service calls it when it stops).
    """

    KEPT = ("lot_id", "wafer_id", "model_version", "class", "confidence", "triage")

    def __init__(self, root: str | Path, flush_seconds: float = 2.0, max_rows: int = 4096) -> None:
        super().__init__(root)
        self.flush_seconds, self.max_rows = flush_seconds, max_rows
        self._pending: list[tuple] = []
        self._pending_rows = 0
        self._wake = threading.Condition()
        self._closed = False
        self._flusher = threading.Thread(target=self._run, name="prediction-log-flush", daemon=True)
        self._flusher.start()

    def append(
        self,
        results: list[dict],
        grids: list[np.ndarray],
        alias: str | None = None,
        when: datetime | None = None,
        latency_ms: float | None = None,
    ) -> str | None:
        """Queue one batch for the next flush; returns None (where it goes is known at the flush).
        After :meth:`close` the batch is written at once."""
        when = when or datetime.now(timezone.utc)
        kept = [{k: r.get(k) for k in self.KEPT} for r in results]
        with self._wake:
            if not self._closed:
                self._pending.append((kept, list(grids), alias, when, latency_ms))
                self._pending_rows += len(kept)
                if self._pending_rows >= self.max_rows:
                    self._wake.notify()
                return None
        return super().append(kept, grids, alias, when, latency_ms)

    def flush(self) -> list[str]:
        """Write what is pending now, one part per day; returns the parts written."""
        with self._wake:
            batches, self._pending, self._pending_rows = self._pending, [], 0
        by_day: dict[date, list[tuple]] = {}
        for batch in batches:
            by_day.setdefault(batch[3].date(), []).append(batch)
        written = []
        for day_batches in by_day.values():

            def frame(day_batches=day_batches) -> pd.DataFrame:
                return pd.concat([self.rows(*b) for b in day_batches], ignore_index=True)

            wafers = sum(len(b[0]) for b in day_batches)
            if where := self._write(frame, wafers, day_batches[0][3]):
                written.append(where)
        return written

    def close(self) -> None:
        """Stop the flusher and write what is pending (idempotent)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._flusher.join()
        self.flush()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._closed:
                    self._wake.wait(self.flush_seconds)
                closed = self._closed
            if closed:
                return
            self.flush()


def logged_grids(rows: pd.DataFrame) -> list[np.ndarray | None]:
    """The die grid of each log row (None for a row written before the log kept grids, or whose
    bytes do not fill its shape)."""
    if "die_grid" not in rows:
        return [None] * len(rows)
    grids = []
    for data, n_rows, n_cols in zip(rows["die_grid"], rows["grid_rows"], rows["grid_cols"]):
        ok = isinstance(data, (bytes, bytearray)) and pd.notna(n_rows) and pd.notna(n_cols)
        ok = ok and int(n_rows) > 0 and int(n_cols) > 0 and len(data) == int(n_rows) * int(n_cols)
        grids.append(np.frombuffer(data, np.uint8).reshape(int(n_rows), int(n_cols)).copy() if ok else None)
    return grids


def _is_part(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(".")  # dot files: temp files, macOS ._ copies


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``, whole or not at all; never replaces an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp")  # hidden and not *.parquet: never read as a part
    fh = open(tmp, "xb")  # "x": the name carries the part's uuid, so it is ours alone
    try:
        with fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # unlike a rename, fails rather than replace an existing part
    finally:
        tmp.unlink(missing_ok=True)


def _s3_body(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
