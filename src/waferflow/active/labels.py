"""Labels coming back from annotators: checked, merged with provenance, never silently overwritten.

``waferflow label import FILE.csv`` reads ``wafer_id,label[,annotator]`` rows (``wafer_id`` as the
queue writes it, ``LOT:WAFER``; or separate ``lot_id`` and ``wafer_id`` columns). A row is
accepted when its wafer is in the current annotation queue and its label is one of the nine
classes (case, ``_``/space/``-`` variants accepted: ``edge loc`` → ``Edge-Loc``). Accepted rows
are appended to ``<al.labels_dir>/al_labels.parquet`` with round, annotator, time and source
file/line. Rejected rows — unknown wafer, unknown label, two different labels for one wafer in
the file, a label that contradicts one already stored — go to
``data/quarantine/labels/<file>_<time>.csv`` with line, field and reason. Re-importing the same
file changes nothing. Rows with an empty label (not labeled yet) are skipped and counted.

The split stage reads the store (:func:`apply_labels`): each stored label is given to the
matching unlabeled wafer, so the next ``dvc repro`` trains on the enlarged pool.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from waferflow.classes import CLASSES
from waferflow.data.parsers.base import Reject
from waferflow.data.quarantine import write_rejects

__all__ = ["STORE_NAME", "LABEL_COLUMNS", "normalise_label", "queue_key", "read_store", "import_labels",
           "apply_labels", "ImportReport"]

STORE_NAME = "al_labels.parquet"
LABEL_COLUMNS = ["lot_id", "wafer_id", "label", "annotator", "round", "imported_at", "source_file", "source_line"]
_CANON = {re.sub(r"[^a-z0-9]", "", c.lower()): c for c in CLASSES}


def normalise_label(value: str) -> str | None:
    """The class a label names, or None (``'edge_loc'`` → ``'Edge-Loc'``, ``'NONE'`` → ``'none'``)."""
    return _CANON.get(re.sub(r"[^a-z0-9]", "", str(value).lower()))


def queue_key(lot_id: str, wafer_id: str) -> str:
    return f"{lot_id}:{wafer_id}"


def read_store(labels_dir: str | Path) -> pd.DataFrame:
    path = Path(labels_dir) / STORE_NAME
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("round", "source_line") else "object")
                             for c in LABEL_COLUMNS})
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
        lines = [f"{self.file}: {self.accepted} label(s) accepted into {self.store} (round {self.round}), "
                 f"{self.unchanged} already known, {self.skipped_empty} without a label, "
                 f"{len(self.rejects)} rejected"]
        lines += [f"  REJECTED {r}" for r in self.rejects[:20]]
        if len(self.rejects) > 20:
            lines.append(f"  ... {len(self.rejects) - 20} more")
        if self.quarantine:
            lines.append(f"rejected rows with reasons: {self.quarantine}")
        return "\n".join(lines)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python")
    except Exception as exc:  # empty file, binary, unbalanced quotes ...
        raise ValueError(f"{path}: not a readable CSV ({exc})") from exc
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = {"wafer_id", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected wafer_id,label[,annotator] "
                         f"(found {list(frame.columns)})")
    return frame


def import_labels(csv_path: str | Path, queue_path: str | Path, labels_dir: str | Path,
                  quarantine_dir: str | Path, annotator: str | None = None,
                  now: datetime | None = None) -> ImportReport:
    """Check and merge one annotator file (see the module doc). Returns what happened."""
    csv_path, labels_dir = Path(csv_path), Path(labels_dir)
    if not Path(queue_path).is_file():
        raise FileNotFoundError(f"no annotation queue at {queue_path}: run `dvc repro al_query` first")
    queue = pd.read_parquet(queue_path)
    in_queue = set(queue["wafer_id"])
    round_ = int(queue["round"].iloc[0]) if len(queue) else 1
    rows = _read_csv(csv_path)
    store = read_store(labels_dir)
    stored = {queue_key(lot, w): (lab, rnd, ann) for lot, w, lab, rnd, ann in
              zip(store["lot_id"], store["wafer_id"], store["label"], store["round"], store["annotator"])}
    report = ImportReport(str(csv_path), round_, store=str(labels_dir / STORE_NAME))
    default_annotator = annotator or os.environ.get("WAFERFLOW_ANNOTATOR") or getpass.getuser()

    def reject(line: int, fld: str, reason: str, raw: dict) -> None:
        report.rejects.append(Reject(str(csv_path), str(line), fld, reason, stage="label_import",
                                     raw=json.dumps(raw)))

    candidates: dict[str, list[tuple[int, str, str, dict]]] = {}
    for i, row in enumerate(rows.to_dict("records")):
        line = i + 2  # header is line 1
        key = row["wafer_id"].strip()
        if row.get("lot_id", "").strip():
            key = queue_key(row["lot_id"].strip(), key)
        if not row["label"].strip():
            report.skipped_empty += 1
            continue
        label = normalise_label(row["label"])
        if key not in in_queue:
            reject(line, "wafer_id", f"{key!r} is not in the annotation queue (round {round_})", row)
        elif label is None:
            reject(line, "label", f"unknown class {row['label']!r}; known: {', '.join(CLASSES)}", row)
        else:
            who = row.get("annotator", "").strip() or default_annotator
            candidates.setdefault(key, []).append((line, label, who, row))

    when = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    lot_of = dict(zip(queue["wafer_id"], queue["lot_id"]))
    slot_of = dict(zip(queue["wafer_id"], queue["slot"]))
    new = []
    for key, found in candidates.items():
        labels = {lab for _, lab, _, _ in found}
        if len(labels) > 1:
            lines = ", ".join(str(line) for line, *_ in found)
            for line, _, _, row in found:
                reject(line, "label", f"conflicting labels {sorted(labels)} for {key} in this file (lines {lines})",
                       row)
            continue
        line, label, who, row = found[0]
        report.unchanged += len(found) - 1  # the same label repeated
        if key in stored:
            old_label, old_round, old_who = stored[key]
            if old_label == label:
                report.unchanged += 1
            else:
                reject(line, "label", f"{key} already labeled {old_label!r} (round {old_round}, by {old_who}); "
                                      f"not overwritten", row)
            continue
        new.append({"lot_id": lot_of[key], "wafer_id": slot_of[key], "label": label, "annotator": who,
                    "round": round_, "imported_at": when, "source_file": str(csv_path.resolve()),
                    "source_line": line})
    if new:
        labels_dir.mkdir(parents=True, exist_ok=True)
        merged = pd.concat([store, pd.DataFrame(new, columns=LABEL_COLUMNS)], ignore_index=True)
        tmp = labels_dir / f".{STORE_NAME}.tmp"
        merged.to_parquet(tmp, index=False)
        os.replace(tmp, labels_dir / STORE_NAME)  # atomic: a crash never leaves half a store
    report.accepted = len(new)
    if report.rejects:
        stamp = when.replace(":", "").replace("+0000", "Z")
        report.quarantine = str(write_rejects(report.rejects, Path(quarantine_dir) / f"{csv_path.stem}_{stamp}.csv"))
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
            extra["label_provenance"] = {"source": "al", "round": int(rec["round"]), "annotator": rec["annotator"],
                                         "imported_at": rec["imported_at"]}
            attrs[i] = json.dumps(extra)
            counts["applied"] += 1
    frame["label"], frame["attrs"] = labels, attrs
    return frame, counts
