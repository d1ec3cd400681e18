"""Ingest: every source file -> one canonical Parquet table, rejects to quarantine, a report.

Example:
    >>> from waferflow.data.ingest import ingest
    >>> report = ingest(["data/raw"], "data/interim/ingested.parquet", "data/quarantine/ingest")  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from waferflow.data.parsers import FileRejected, ParserOptions, Reject, format_of, parse_file
from waferflow.data.quarantine import reason_kind, write_rejects
from waferflow.data.records import WaferRecord, write_records
from waferflow.fileio import write_json

__all__ = ["IngestReport", "ingest", "discover"]


@dataclass
class IngestReport:
    """Counts of what was read, kept and rejected, per source file and in total."""

    files: dict[str, dict] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    records: int = 0
    rejected: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    per_format: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "rejected": self.rejected,
            "per_class": self.per_class,
            "per_format": self.per_format,
            "rejected_by_reason": self.rejected_by_reason,
            "files": self.files,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "IngestReport":
        """The report back from :meth:`as_dict` (``reports/ingest.json``)."""
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def summary(self) -> str:
        lines = [f"ingested {self.records} wafers from {len(self.files)} file(s); rejected {self.rejected}"]
        for name, info in self.files.items():
            status = (
                f"REJECTED: {info['error']}"
                if info.get("error")
                else f"{info['records']} kept, {info['rejected']} rejected"
            )
            lines.append(f"  {name} [{info['format']}]: {status}")
        if self.per_class:
            lines.append("  per class: " + ", ".join(f"{k}={v}" for k, v in sorted(self.per_class.items())))
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected {n}: {reason}")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} file(s) of no supported type: {', '.join(self.skipped[:5])}")
        return "\n".join(lines)


def discover(sources: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Files to ingest: given files as they are, directories walked for supported types.

    Returns (files, skipped) where skipped are files inside directories with no parser.
    A source that does not exist raises ``FileNotFoundError``: a typo must not pass silently
    (a dangling or looping symlink exists: its file is rejected with the reason).
    """
    files, skipped = [], []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if _is_file_or_dangling(q) and not q.name.startswith(".")):
                (files.append(f) if format_of(f) else skipped.append(str(f)))
        elif _is_file_or_dangling(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"ingest source {p} does not exist")
    return files, skipped


def _is_file_or_dangling(path: Path) -> bool:
    """A file, or a link that leads nowhere (a loop, a missing target): the parser rejects it
    with the reason, rather than the link being skipped unseen."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def ingest(
    sources: Iterable[str | Path],
    out_path: str | Path,
    quarantine_dir: str | Path,
    report_path: str | Path | None = None,
    options: ParserOptions | None = None,
    progress: bool = True,
) -> IngestReport:
    """Parse every source into ``out_path``; rejects go to ``quarantine_dir/rejects.csv``.

    Raises ``IsADirectoryError`` before reading anything when ``out_path`` is a folder."""
    if Path(out_path).is_dir():
        raise IsADirectoryError(f"--out {out_path} is a folder; give the path of the Parquet file to write")
    files, skipped = discover(sources)
    report = IngestReport(skipped=skipped)
    records: list[WaferRecord] = []
    rejects: list[Reject] = []
    for path in tqdm(files, desc="ingest files", disable=not progress or len(files) < 2, unit="file"):
        info = {"format": format_of(path) or "unsupported", "records": 0, "rejected": 0}
        try:
            result = parse_file(path, options, progress=progress)
        except FileRejected as exc:
            info["error"] = exc.reason
            rejects.append(Reject(str(path), None, exc.field, exc.reason))
        else:
            info["records"], info["rejected"] = len(result.records), len(result.rejects)
            records.extend(result.records)
            rejects.extend(result.rejects)
        report.files[str(path)] = info
    report.records = len(records)
    report.rejected = len(rejects)
    report.per_class = dict(Counter(r.label or "unlabeled" for r in records))
    report.per_format = dict(Counter(info["format"] for info in report.files.values()))
    report.rejected_by_reason = dict(Counter(f"{r.field or 'file'}: {reason_kind(r.reason)}" for r in rejects))
    write_records(records, out_path)
    write_rejects(rejects, Path(quarantine_dir) / "rejects.csv")
    if report_path is not None:
        write_json(report_path, report.as_dict())
    return report
