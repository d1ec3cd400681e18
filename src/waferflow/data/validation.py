"""Validate the canonical table with a great-expectations suite; quarantine failing wafers.

Each wafer is summarised by a few columns (die-code range, die count, fail ratio, mask range,
shape) and the suite's expectations run over those and the canonical columns: schema, die
codes in {0, 1, 2}, shape bounds, non-empty wafer area, fail ratio in [0, 1], labels in the
known set, unique (lot_id, wafer_id), mask indices in range and on the wafer. Wafers that fail
any expectation are written to quarantine with the expectations they failed.

Example:
    >>> from waferflow.data.validation import validate_frame, ValidationConfig
    >>> outcome = validate_frame(frame, ValidationConfig())  # doctest: +SKIP
    >>> outcome.rejected_fraction  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from waferflow.classes import CLASSES, DIE_FAIL, DIE_NONE, PATTERN_CLASSES
from waferflow.data.records import SCHEMA, grid_from_row, mask_from_row, write_records
from waferflow.fileio import atomic_path, write_json, write_text

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no network on fab servers

__all__ = [
    "ValidationConfig",
    "ValidationOutcome",
    "ValidationFailed",
    "wafer_summary",
    "build_suite",
    "validate_frame",
    "write_validation_outputs",
]


class ValidationFailed(RuntimeError):
    """More wafers were rejected than ``max_reject_fraction`` allows."""


@dataclass(frozen=True)
class ValidationConfig:
    """Bounds of the suite (``validate`` in ``params.yaml``)."""

    min_side: int = 3
    max_side: int = 1024
    max_reject_fraction: float = 0.05


@dataclass
class ValidationOutcome:
    valid: pd.DataFrame
    rejected: pd.DataFrame  # canonical columns + "failed_expectations"
    result: dict
    expectations: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.rejected)

    @property
    def rejected_fraction(self) -> float:
        return len(self.rejected) / self.total if self.total else 0.0


def wafer_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-wafer columns the suite checks, computed from the stored grids and masks."""
    stats = []
    for row in frame[["height", "width", "die_grid", "defect_mask"]].to_dict("records"):
        try:
            grid = grid_from_row(row)
        except ValueError:  # die_grid bytes do not match height x width
            stats.append((np.nan, np.nan, np.nan, np.nan, np.nan, np.nan))
            continue
        n_dies = int((grid != DIE_NONE).sum())
        n_fail = int((grid == DIE_FAIL).sum())
        mask = mask_from_row(row) if row["defect_mask"] is not None else None
        stats.append(
            (
                int(grid.min()) if grid.size else np.nan,
                int(grid.max()) if grid.size else np.nan,
                n_dies,
                n_fail / n_dies if n_dies else np.nan,
                int(mask.max()) if mask is not None and mask.size else np.nan,
                int(((mask > 0) & (grid == DIE_NONE)).sum()) if mask is not None else np.nan,
            )
        )
    out = pd.DataFrame(
        stats, columns=["min_code", "max_code", "n_dies", "fail_ratio", "mask_max", "mask_off_wafer"], index=frame.index
    )
    return pd.concat([frame.drop(columns=["die_grid", "defect_mask"]), out], axis=1)


def build_suite(cfg: ValidationConfig):
    """The great-expectations suite over :func:`wafer_summary`'s table."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="waferflow_canonical")
    summary_columns = [n for n in SCHEMA.names if n not in ("die_grid", "defect_mask")] + [
        "min_code",
        "max_code",
        "n_dies",
        "fail_ratio",
        "mask_max",
        "mask_off_wafer",
    ]
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=summary_columns, exact_match=True),
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("lot_id", "wafer_id", "height", "width", "min_code")],
        gxe.ExpectColumnValuesToBeBetween(column="min_code", min_value=0, max_value=2),
        gxe.ExpectColumnValuesToBeBetween(column="max_code", min_value=0, max_value=2),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=cfg.min_side, max_value=cfg.max_side),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=cfg.min_side, max_value=cfg.max_side),
        gxe.ExpectColumnValuesToBeBetween(column="n_dies", min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="fail_ratio"),
        gxe.ExpectColumnValuesToBeBetween(column="fail_ratio", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(CLASSES)),
        gxe.ExpectColumnValuesToBeInSet(column="split_hint", value_set=["train", "test"]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["lot_id", "wafer_id"]),
        gxe.ExpectColumnValuesToBeBetween(column="mask_max", min_value=0, max_value=len(PATTERN_CLASSES)),
        gxe.ExpectColumnValuesToBeBetween(column="mask_off_wafer", min_value=0, max_value=0),
    ]
    for exp in expectations:
        suite.add_expectation(exp)
    return suite


def _describe(cfg: dict) -> str:
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    return f"{cfg['type']}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def validate_frame(frame: pd.DataFrame, cfg: ValidationConfig) -> ValidationOutcome:
    """Run the suite over a canonical DataFrame; split it into valid and rejected wafers."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame = frame.reset_index(drop=True)
    summary = wafer_summary(frame)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("waferflow").add_dataframe_asset("canonical")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": summary})
    suite = context.suites.add(build_suite(cfg))
    result = batch.validate(suite, result_format="COMPLETE").to_json_dict()

    failed_by_row: dict[int, list[str]] = {}
    expectations = []
    table_level_failures = []
    for res in result["results"]:
        desc = _describe(res["expectation_config"])
        rows = res["result"].get("unexpected_index_list")
        if rows is not None:
            rows = [int(r) if not isinstance(r, dict) else int(next(iter(r.values()))) for r in rows]
        expectations.append(
            {
                "expectation": desc,
                "success": res["success"],
                "unexpected_count": res["result"].get("unexpected_count", 0 if res["success"] else None),
                "observed_value": res["result"].get("observed_value"),
                "sample": [f"{frame.at[i, 'lot_id']}/{frame.at[i, 'wafer_id']}" for i in (rows or [])[:10]],
            }
        )
        if not res["success"] and rows is None:
            table_level_failures.append(desc)
        for i in rows or []:
            failed_by_row.setdefault(i, []).append(desc)
    if table_level_failures:
        raise ValidationFailed(
            "table-level expectations failed (the table itself is malformed): " + "; ".join(table_level_failures)
        )
    bad = sorted(failed_by_row)
    rejected = frame.loc[bad].copy()
    rejected["failed_expectations"] = [" | ".join(failed_by_row[i]) for i in bad]
    valid = frame.drop(index=bad)
    return ValidationOutcome(valid=valid, rejected=rejected, result=result, expectations=expectations)


def _html_report(outcome: ValidationOutcome, cfg: ValidationConfig) -> str:
    esc = html.escape
    status = "PASSED" if outcome.rejected_fraction <= cfg.max_reject_fraction else "FAILED"
    rows = "".join(
        f"<tr class={'ok' if e['success'] else 'bad'}><td>{'✔' if e['success'] else '✘'}</td>"
        f"<td><code>{esc(e['expectation'])}</code></td>"
        f"<td>{e['unexpected_count'] if e['unexpected_count'] is not None else ''}</td>"
        f"<td>{esc(', '.join(e['sample']))}</td></tr>"
        for e in outcome.expectations
    )
    rej = outcome.rejected.head(200)
    rej_rows = "".join(
        f"<tr><td>{esc(str(r.lot_id))}</td><td>{esc(str(r.wafer_id))}</td><td>{esc(str(r.source_ref))}</td>"
        f"<td>{esc(r.failed_expectations)}</td></tr>"
        for r in rej.itertuples()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>waferflow validation</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
table{{border-collapse:collapse}}tr.bad{{background:#fde2e2}}tr.ok{{background:#e6f4e6}}</style></head><body>
<h1>Validation {status}</h1>
<p>{outcome.total} wafers checked by great-expectations suite <code>waferflow_canonical</code>;
{len(outcome.rejected)} rejected ({outcome.rejected_fraction:.2%}, allowed {cfg.max_reject_fraction:.2%});
{len(outcome.valid)} kept.</p>
<h2>Expectations</h2><table><tr><th></th><th>expectation</th><th>unexpected</th>
<th>sample lot/wafer</th></tr>{rows}</table>
<h2>Rejected wafers{" (first 200)" if len(outcome.rejected) > 200 else ""}</h2>
<table><tr><th>lot</th><th>wafer</th><th>source</th><th>failed expectations</th></tr>{rej_rows}</table></body></html>
"""


def write_validation_outputs(
    outcome: ValidationOutcome,
    cfg: ValidationConfig,
    valid_path: str | Path,
    quarantine_dir: str | Path,
    report_dir: str | Path,
) -> dict:
    """Write the valid table, quarantined wafers with reasons, GE JSON and the HTML report.

    Raises :class:`ValidationFailed` after writing everything when too many wafers were rejected.
    """
    quarantine_dir, report_dir = Path(quarantine_dir), Path(report_dir)
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_records(pa.Table.from_pandas(outcome.valid[SCHEMA.names], schema=SCHEMA, preserve_index=False), valid_path)
    write_records(
        pa.Table.from_pandas(outcome.rejected[SCHEMA.names], schema=SCHEMA, preserve_index=False),
        quarantine_dir / "rejected.parquet",
    )
    reasons = outcome.rejected[["lot_id", "wafer_id", "source_ref", "failed_expectations"]].copy()
    reasons.insert(0, "stage", "validate")
    with atomic_path(quarantine_dir / "rejects.csv") as tmp:
        reasons.to_csv(tmp, index=False)
    summary = {
        "checked": outcome.total,
        "kept": len(outcome.valid),
        "rejected": len(outcome.rejected),
        "rejected_fraction": round(outcome.rejected_fraction, 6),
        "max_reject_fraction": cfg.max_reject_fraction,
        "success": outcome.rejected_fraction <= cfg.max_reject_fraction,
        "expectations": outcome.expectations,
    }
    write_json(report_dir / "validation.json", summary, sort_keys=False, default=str)
    write_json(report_dir / "ge_result.json", outcome.result, indent=1, sort_keys=False, default=str)
    write_text(report_dir / "validation.html", _html_report(outcome, cfg))
    if not summary["success"]:
        raise ValidationFailed(
            f"{len(outcome.rejected)} of {outcome.total} wafers ({outcome.rejected_fraction:.2%}) failed validation, "
            f"more than validate.max_reject_fraction={cfg.max_reject_fraction:.2%}; "
            f"see {report_dir / 'validation.html'} "
            f"and {quarantine_dir / 'rejects.csv'}"
        )
    return summary
