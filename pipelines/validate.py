"""Stage validate: the great-expectations suite over the ingested table.

DVC runs ``python pipelines/validate.py``. Valid wafers go to ``data/interim/validated.parquet``,
the others to ``data/quarantine/validate`` with the expectations they failed; the report is in
``reports/validation``. More rejects than ``validate.max_reject_fraction`` fails the stage.
"""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.data.records import read_frame
from waferflow.data.validation import validate_frame, write_validation_outputs
from waferflow.layout import Layout


def run(params: Params, layout: Layout) -> dict:
    """Keep valid wafers, quarantine the rest; counts and the expectations' results."""
    cfg = params.validate_.config()
    outcome = validate_frame(read_frame(layout.ingested), cfg)
    return write_validation_outputs(
        outcome, cfg, layout.validated, layout.quarantine / "validate", layout.reports / "validation"
    )


def result(layout: Layout) -> dict:
    return json.loads((layout.reports / "validation/validation.json").read_text())


def summarise(s: dict) -> list[str]:
    return [
        f"validation passed: {s['kept']} kept, {s['rejected']} rejected ({s['rejected_fraction']:.2%}); "
        "report reports/validation/validation.html"
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("validate")
