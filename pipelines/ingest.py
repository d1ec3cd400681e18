"""Stage ingest: every configured source (``ingest.sources``) into the canonical table.

DVC runs ``python pipelines/ingest.py``; ``waferflow ingest`` (no files) runs the same ``run``.
Outputs: ``data/interim/ingested.parquet``, rejects in ``data/quarantine/ingest``, ``reports/ingest.json``.
"""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.data.ingest import IngestReport, ingest
from waferflow.layout import Layout


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Ingest every source; rejects to quarantine. No wafer at all is a failure."""
    sources = [str(layout / s) for s in params.ingest.sources]
    report = ingest(
        sources,
        layout.ingested,
        layout.quarantine / "ingest",
        layout.reports / "ingest.json",
        options=params.ingest.parser_options(),
        progress=progress,
    )
    if report.records == 0:
        raise RuntimeError(f"ingest produced no wafers from {sources}; see {layout.quarantine / 'ingest/rejects.csv'}")
    return report.as_dict()


def result(layout: Layout) -> dict:
    return json.loads((layout.reports / "ingest.json").read_text())


def summarise(values: dict) -> list[str]:
    return IngestReport.from_dict(values).summary().splitlines()


if __name__ == "__main__":
    from waferflow.stages import main

    main("ingest")
