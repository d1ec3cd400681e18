"""Labels coming back from annotators: checked, merged with provenance, never silently overwritten.

``waferflow label import FILE.csv`` reads ``wafer_id,label[,annotator]`` rows (``wafer_id`` as the
queue writes it, ``LOT:WAFER``; or separate ``lot_id`` and ``wafer_id`` columns). The file is
UTF-8, with or without the byte-order mark of Excel's "CSV UTF-8"; UTF-16 or UTF-32 with a
byte-order mark (Excel's "Unicode text") is read too. A file that is not UTF-8 (latin-1,
Windows-1252) is refused, naming the first bad byte and its line, and so is one with NUL
characters (UTF-16 without a mark, a spreadsheet): no encoding is guessed, as a wrong guess
silently changes names. The delimiter is the one of ``, ; tab |`` that the header line uses most
(``,`` when none). One record per line: a line whose quoting is broken (a quote never closed) or
which has more fields than the header is rejected on its own and the rest of the file is kept;
missing trailing fields are empty.

A row is accepted when its wafer is in the current annotation queue and its label is one of the
nine classes (case, ``_``/space/``-`` variants accepted: ``edge loc`` → ``Edge-Loc``); an empty
annotator field means ``--annotator`` (default ``$WAFERFLOW_ANNOTATOR`` or the user name). Accepted
rows are appended to ``<al.labels_dir>/al_labels.parquet`` with round, annotator, time and source
file/line. Rejected rows — a malformed line, unknown wafer, unknown label, two different labels for
one wafer in the file, a label that contradicts one already stored — go to
``data/quarantine/labels/<file>_<time>_<id>.csv`` with line, field and reason. Re-importing the same
file changes nothing. Rows with an empty label (not labeled yet) are skipped and counted.

Imports into one store take turns: a file lock, ``<al.labels_dir>/.al_labels.lock``, is held from
reading the store to writing it, so two imports at once both keep their labels (the operating
system drops the lock when its holder dies: nothing stale to remove). The store is written to a
unique temporary file and renamed over the old one, so a reader never sees half a store.

The split stage reads the store (:func:`apply_labels`): each stored label is given to the
matching unlabeled wafer, so the next ``dvc repro`` trains on the enlarged pool.
"""

from __future__ import annotations

import codecs
import csv
import getpass
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from filelock import FileLock

from waferflow.classes import CLASSES
from waferflow.data.parsers.base import DELIMITERS, Reject, field_count_reason, other_delimiter, split_line
from waferflow.data.quarantine import write_rejects
from waferflow.fileio import atomic_path

__all__ = [
    "STORE_NAME",
    "LABEL_COLUMNS",
    "normalise_label",
    "queue_key",
    "read_store",
    "import_labels",
    "apply_labels",
    "ImportReport",
]

STORE_NAME = "al_labels.parquet"
LOCK_NAME = ".al_labels.lock"
LABEL_COLUMNS = ["lot_id", "wafer_id", "label", "annotator", "round", "imported_at", "source_file", "source_line"]
_CANON = {re.sub(r"[^a-z0-9]", "", c.lower()): c for c in CLASSES}
# Byte-order marks: UTF-32 LE before UTF-16 LE, which starts the same way.
_BOMS = [
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
_HOW_TO_FIX = 'save it as "CSV UTF-8" (Excel: Save As > CSV UTF-8) and import it again'


def normalise_label(value: str) -> str | None:
    """The class a label names, or None (``'edge_loc'`` → ``'Edge-Loc'``, ``'NONE'`` → ``'none'``)."""
    return _CANON.get(re.sub(r"[^a-z0-9]", "", str(value).lower()))


def queue_key(lot_id: str, wafer_id: str) -> str:
    return f"{lot_id}:{wafer_id}"


def read_store(labels_dir: str | Path) -> pd.DataFrame:
    path = Path(labels_dir) / STORE_NAME
    if not path.is_file():
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c in ("round", "source_line") else "object") for c in LABEL_COLUMNS}
        )
    return pd.read_parquet(path)


@dataclass
class ImportReport:
    file: str
    round: int
    accepted: int = 0
    unchanged: int = 0
    skipped_empty: int = 0
    rejects: list[Reject] = field(default_factory=list)
    store: str = ""
    quarantine: str | None = None

    def summary(self) -> str:
        lines = [
            f"{self.file}: {self.accepted} label(s) accepted into {self.store} (round {self.round}), "
            f"{self.unchanged} already known, {self.skipped_empty} without a label, "
            f"{len(self.rejects)} rejected"
        ]
        lines += [f"  REJECTED {r}" for r in self.rejects[:20]]
        if len(self.rejects) > 20:
            lines.append(f"  ... {len(self.rejects) - 20} more")
        if self.quarantine:
            lines.append(f"rejected rows with reasons: {self.quarantine}")
        return "\n".join(lines)


def _reject(path: str | Path, line: int, fld: str | None, reason: str, raw: object) -> Reject:
    return Reject(str(path), str(line), fld, reason, stage="label_import", raw=json.dumps(raw))


def _decode(path: Path) -> str:
    """The text of a label file, or a ValueError saying why it is not text we read (see the module doc)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\x00" in data:
        raise ValueError(
            f"{path}: not a text CSV (NUL characters: UTF-16 without a byte-order mark, or a "
            f"spreadsheet); {_HOW_TO_FIX}"
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        raise ValueError(
            f"{path}: not {encoding.upper().replace('-SIG', '')} (byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start}, line {line}); {_HOW_TO_FIX}"
        ) from None


def _read_rows(path: Path) -> tuple[list[tuple[int, dict[str, str]]], list[Reject]]:
    """The rows of a label file with their line numbers (header is line 1), and the lines rejected as malformed."""
    lines = re.split(r"\r\n|\r|\n", _decode(path))
    delimiter = max(DELIMITERS, key=lines[0].count)
    try:
        header = [c.strip().lower() for c in split_line(lines[0], delimiter)]
    except csv.Error as exc:
        raise ValueError(f"{path}: unreadable header line ({exc})") from None
    missing = {"wafer_id", "label"} - set(header)
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {sorted(missing)}; expected wafer_id,label[,annotator] (found {header})"
        )
    rows, malformed = [], []
    for number, line in enumerate(lines[1:], start=2):
        try:
            values = split_line(line, delimiter) if line.strip() else []
        except csv.Error as exc:
            malformed.append(
                _reject(
                    path,
                    number,
                    None,
                    f"unbalanced quote ({exc}); a quoted field ends on its "
                    f'own line and a quote inside it is doubled ("")',
                    line,
                )
            )
            continue
        if len(values) > len(header) or (len(values) < len(header) and other_delimiter(line, len(header), delimiter)):
            malformed.append(
                _reject(path, number, None, field_count_reason(len(values), line, len(header), delimiter), line)
            )
        elif values:
            rows.append((number, dict(zip(header, values + [""] * (len(header) - len(values))))))
    return rows, malformed


def _check_rows(
    rows: list[tuple[int, dict[str, str]]], in_queue: set[str], default_annotator: str, report: ImportReport
) -> dict[str, list[tuple[int, str, str, dict]]]:
    """(line, label, annotator, row) of each row naming a queued wafer and a class, by wafer; others rejected."""
    candidates: dict[str, list[tuple[int, str, str, dict]]] = {}
    for line, row in rows:
        key = row["wafer_id"].strip()
        if row.get("lot_id", "").strip():
            key = queue_key(row["lot_id"].strip(), key)
        label = normalise_label(row["label"])
        if not row["label"].strip():
            report.skipped_empty += 1
        elif key not in in_queue:
            report.rejects.append(
                _reject(
                    report.file, line, "wafer_id", f"{key!r} is not in the annotation queue (round {report.round})", row
                )
            )
        elif label is None:
            report.rejects.append(
                _reject(report.file, line, "label", f"unknown class {row['label']!r}; known: {', '.join(CLASSES)}", row)
            )
        else:
            who = row.get("annotator", "").strip() or default_annotator
            candidates.setdefault(key, []).append((line, label, who, row))
    return candidates


def _new_labels(
    candidates: dict[str, list[tuple[int, str, str, dict]]],
    store: pd.DataFrame,
    queue: pd.DataFrame,
    when: str,
    report: ImportReport,
) -> list[dict]:
    """Store rows for the candidates that agree within the file and with the store; the others rejected."""
    stored = {
        queue_key(lot, w): (lab, rnd, ann)
        for lot, w, lab, rnd, ann in zip(
            store["lot_id"], store["wafer_id"], store["label"], store["round"], store["annotator"]
        )
    }
    lot_of = dict(zip(queue["wafer_id"], queue["lot_id"]))
    slot_of = dict(zip(queue["wafer_id"], queue["slot"]))
    new = []
    for key, found in candidates.items():
        labels = {lab for _, lab, _, _ in found}
        if len(labels) > 1:
            lines = ", ".join(str(line) for line, *_ in found)
            for line, _, _, row in found:
                report.rejects.append(
                    _reject(
                        report.file,
                        line,
                        "label",
                        f"conflicting labels {sorted(labels)} for {key} in this file (lines {lines})",
                        row,
                    )
                )
            continue
        line, label, who, row = found[0]
        report.unchanged += len(found) - 1  # the same label repeated
        if key in stored:
            old_label, old_round, old_who = stored[key]
            if old_label == label:
                report.unchanged += 1
            else:
                report.rejects.append(
                    _reject(
                        report.file,
                        line,
                        "label",
                        f"{key} already labeled {old_label!r} (round {old_round}, by {old_who}); not overwritten",
                        row,
                    )
                )
            continue
        new.append(
            {
                "lot_id": lot_of[key],
                "wafer_id": slot_of[key],
                "label": label,
                "annotator": who,
                "round": report.round,
                "imported_at": when,
                "source_file": str(Path(report.file).resolve()),
                "source_line": line,
            }
        )
    return new


def import_labels(
    csv_path: str | Path,
    queue_path: str | Path,
    labels_dir: str | Path,
    quarantine_dir: str | Path,
    annotator: str | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Check and merge one annotator file (see the module doc). Returns what happened."""
    csv_path, labels_dir = Path(csv_path), Path(labels_dir)
    if not Path(queue_path).is_file():
        raise FileNotFoundError(f"no annotation queue at {queue_path}: run `dvc repro al_query` first")
    queue = pd.read_parquet(queue_path)
    round_ = int(queue["round"].iloc[0]) if len(queue) else 1
    rows, malformed = _read_rows(csv_path)
    report = ImportReport(str(csv_path), round_, rejects=malformed, store=str(labels_dir / STORE_NAME))
    default_annotator = annotator or os.environ.get("WAFERFLOW_ANNOTATOR") or getpass.getuser()
    candidates = _check_rows(rows, set(queue["wafer_id"]), default_annotator, report)
    when = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    labels_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(labels_dir / LOCK_NAME):  # no other import between our read and our write of the store
        store = read_store(labels_dir)
        new = _new_labels(candidates, store, queue, when, report)
        if new:
            merged = pd.concat([store, pd.DataFrame(new, columns=LABEL_COLUMNS)], ignore_index=True)
            with atomic_path(labels_dir / STORE_NAME) as tmp:
                merged.to_parquet(tmp, index=False)
    report.accepted = len(new)
    if report.rejects:
        stamp = when.replace(":", "").replace("+0000", "Z")
        name = f"{csv_path.stem}_{stamp}_{uuid.uuid4().hex[:6]}.csv"  # two imports in one second: two files
        report.quarantine = str(write_rejects(report.rejects, Path(quarantine_dir) / name))
    return report


def apply_labels(frame: pd.DataFrame, labels_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """Give stored annotator labels to the matching unlabeled wafers of a canonical frame.

    Returns the frame (a copy) and counts: applied, already labeled in the source (left as the
    source says), not found (the wafer is no longer in the data)."""
    store = read_store(labels_dir)
    counts = {"stored": int(len(store)), "applied": 0, "source_already_labeled": 0, "not_found": 0}
    if store.empty:
        return frame, counts
    frame = frame.copy()
    index = {(lot, w): i for i, (lot, w) in enumerate(zip(frame["lot_id"], frame["wafer_id"]))}
    labels, attrs = frame["label"].tolist(), frame["attrs"].tolist()
    for rec in store.to_dict("records"):
        i = index.get((rec["lot_id"], rec["wafer_id"]))
        if i is None:
            counts["not_found"] += 1
        elif isinstance(labels[i], str):
            counts["source_already_labeled"] += 1
        else:
            labels[i] = rec["label"]
            extra = json.loads(attrs[i]) if isinstance(attrs[i], str) and attrs[i] else {}
            extra["label_provenance"] = {
                "source": "al",
                "round": int(rec["round"]),
                "annotator": rec["annotator"],
                "imported_at": rec["imported_at"],
            }
            attrs[i] = json.dumps(extra)
            counts["applied"] += 1
    frame["label"], frame["attrs"] = labels, attrs
    return frame, counts
