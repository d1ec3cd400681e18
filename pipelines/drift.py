"""Stage drift (not a DVC stage: its input is live traffic): the prediction log's last
``drift.window_days`` days — the champion's answers, the challenger's shadow rows left out —
against the reference (the production maps the model was trained beside, with the champion's
predictions on them), with evidently (``params.yaml → drift``).

The monitor DAG runs ``python -m waferflow.stages drift --json`` daily; ``waferflow drift`` runs the same
``run`` (or :func:`check` on the files it is given). Outputs: ``metrics/drift.json`` (the summary
and the decision) and evidently's ``metrics/drift.html``, an MLflow run ``drift``. A window with
fewer than ``drift.min_wafers`` wafers is not judged: a quiet day must not page anyone, nor
trigger a retrain.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout

REFERENCE = Path("data/interim/validated.parquet")


def check(
    params: Params,
    layout: Layout,
    current: pd.DataFrame,
    source: str | list[str],
    out_dir: Path,
    reference: Path = REFERENCE,
    mlflow_run: bool = True,
) -> dict:
    """Drift check of ``current`` against the reference; writes ``out_dir/drift.json`` and
    ``out_dir/drift.html``, logs an MLflow run ``drift``; returns the summary.

    Raises ``ValueError`` when a window is too small to judge (``drift.min_wafers``) and
    ``FileNotFoundError`` when the reference is missing."""
    from waferflow.monitoring.drift import PREDICTION_COLUMNS, check_drift
    from waferflow.monitoring.windows import reference_window
    from waferflow.registry.tracking import log_run

    root = layout.root
    skipped = current.attrs.get("skipped_log_parts", [])  # read first: pandas may drop attrs on the way
    has_predictions = "predicted_class" in current and current["predicted_class"].notna().any()
    ref, info = reference_window(params, root, reference, predictions=has_predictions)
    if has_predictions and "predicted_class" not in ref:
        current = current.drop(columns=list(PREDICTION_COLUMNS), errors="ignore")
    outcome = check_drift(ref, current, params.drift)
    versions = Counter(str(v) for v in current["model_version"].dropna()) if "model_version" in current else {}
    summary = {
        **outcome.summary,
        **info,
        "current": source,
        "current_model_versions": dict(versions),
        "skipped_log_parts": skipped,
        "judged": True,
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out_dir = layout.resolve(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "drift.json", summary, sort_keys=False, default=str)
    outcome.save_html(out_dir / "drift.html")
    if mlflow_run:
        metrics = {
            "drifted_share": summary["drifted_share"],
            "drifted_features": len(summary["drifted_features"]),
            "retrain_recommended": float(summary["retrain_recommended"]),
            "current_wafers": summary["n_current"],
            "reference_wafers": summary["n_reference"],
            **({"novel_share": summary["novel"]["share"]} if summary.get("novel") else {}),
            **{f"drift_score.{c}": v["score"] for c, v in {**summary["features"], **summary["predictions"]}.items()},
        }
        summary["mlflow_run_id"] = log_run(
            "drift",
            params.mlflow,
            root,
            metrics,
            {
                "retrain_recommended": summary["retrain_recommended"],
                "reasons": "; ".join(summary["reasons"]),
                "current": source,
                "reference_model_version": info["reference_model_version"],
            },
            [out_dir / "drift.json", out_dir / "drift.html"],
        )
        write_json(out_dir / "drift.json", summary, sort_keys=False, default=str)
    summary["report"] = str(out_dir / "drift.html")
    return summary


def run(params: Params, layout: Layout) -> dict:
    """The drift check of the log window into ``metrics/``; a window too small is not judged."""
    from waferflow.monitoring.windows import current_window

    current, source = current_window(params, layout.root)
    if len(current) < params.drift.min_wafers:
        why = (
            f"not judged: {len(current)} champion predictions in {source}, fewer than drift.min_wafers = "
            f"{params.drift.min_wafers}"
        )
        return {"judged": False, "retrain_recommended": False, "reasons": [why], "n_current": len(current)}
    return check(params, layout, current, source, layout.metrics)


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "drift.json").read_text())


def summarise(s: dict) -> list[str]:
    if not s.get("judged", True):
        return [f"drift: {s['reasons'][0]}; no retrain"]
    verdict = "RETRAIN RECOMMENDED" if s["retrain_recommended"] else "no retraining needed"
    predictions = (
        s.get("prediction_drift")
        or ", ".join(
            f"{c} {v['method']} {v['score']:.3f} ({'drifted' if v['drifted'] else 'stable'})"
            for c, v in s["predictions"].items()
        )
        + f" vs champion v{s['reference_model_version']}"
    )
    lines = [
        f"drift: {verdict} ({s['n_current']} wafers of {s['current']} vs {s['n_reference']} reference wafers)",
        *(f"drift reason: {r}" for r in s["reasons"]),
        f"drift: {len(s['drifted_features'])} of {len(s['features'])} features drifted "
        f"(share {s['drifted_share']:.0%}, threshold {s['drift_share_threshold']:.0%}): "
        + (", ".join(f"{c} {s['features'][c]['score']:.2f}" for c in s["drifted_features"]) or "none"),
        f"drift: prediction drift {predictions}",
        f"drift: report {s.get('report', 'metrics/drift.html')}; MLflow run {s.get('mlflow_run_id')}",
    ]
    if s.get("skipped_log_parts"):
        lines.append(
            f"drift: {len(s['skipped_log_parts'])} unreadable prediction-log part(s) skipped: "
            + ", ".join(s["skipped_log_parts"][:5])
        )
    return lines


if __name__ == "__main__":
    from waferflow.stages import main

    main("drift")
