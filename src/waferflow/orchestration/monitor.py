"""What the ``waferflow_monitor`` DAG's tasks do, importable and testable without Airflow.

* :func:`drift_step` — the prediction log's last window against the reference (the champion's
  predictions included); ``metrics/drift.json`` + ``metrics/drift.html`` in the project and an
  MLflow run ``drift``. A window smaller than ``drift.min_wafers`` is not judged (no retrain;
  said so in the log) — a quiet day must not page anyone, nor trigger a retrain.
* :func:`retrain_conf` — the ``waferflow_retrain`` trigger conf: ``reason`` says why.
* :func:`shadow_step` — when the registry has a challenger: the shadow report over the window
  (``metrics/shadow.json`` + MLflow run ``shadow``); with ``gate.require_shadow`` and enough
  shadow wafers, the gate judges the challenger again, now with the live-traffic rules.

Each returns a dict whose ``log`` lines say what was decided and why (the DAG logs them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["drift_step", "retrain_conf", "shadow_step"]


def _params(project: Path):
    from waferflow.config import load_params

    return load_params(Path(project) / "params.yaml")


def drift_step(project: Path) -> dict[str, Any]:
    """The drift check of the log window; returns the decision, its reasons and log lines."""
    from waferflow.monitoring.monitor import current_window, run_drift

    p = _params(project)
    current, source = current_window(p, project)
    if len(current) < p.drift.min_wafers:
        why = (f"not judged: {len(current)} champion predictions in {source}, fewer than drift.min_wafers = "
               f"{p.drift.min_wafers}")
        return {"judged": False, "retrain_recommended": False, "reasons": [why], "n_current": len(current),
                "log": [f"drift: {why}; no retrain"]}
    s = run_drift(p, project, current, source, Path("metrics"))
    verdict = "RETRAIN RECOMMENDED" if s["retrain_recommended"] else "no retraining needed"
    lines = [f"drift: {verdict} ({s['n_current']} wafers of {source} vs {s['n_reference']} reference wafers)",
             *(f"drift reason: {r}" for r in s["reasons"]),
             f"drift: {len(s['drifted_features'])} of {len(s['features'])} features drifted "
             f"(share {s['drifted_share']:.0%}, threshold {s['drift_share_threshold']:.0%}): "
             + (", ".join(f"{c} {s['features'][c]['score']:.2f}" for c in s["drifted_features"]) or "none"),
             "drift: prediction drift " + (s.get("prediction_drift") or ", ".join(
                 f"{c} {v['method']} {v['score']:.3f} ({'drifted' if v['drifted'] else 'stable'})"
                 for c, v in s["predictions"].items()) + f" vs champion v{s['reference_model_version']}"),
             f"drift: report {Path(project) / 'metrics/drift.html'}; MLflow run {s.get('mlflow_run_id')}"]
    return {"judged": True, "retrain_recommended": s["retrain_recommended"], "reasons": s["reasons"],
            "n_current": s["n_current"], "drifted_features": s["drifted_features"],
            "drifted_share": s["drifted_share"], "mlflow_run_id": s.get("mlflow_run_id"), "log": lines}


def retrain_conf(drift: dict[str, Any], run_id: str = "") -> dict[str, str]:
    """The conf ``waferflow_retrain`` is triggered with: why, and which monitor run decided it."""
    reason = "drift: " + "; ".join(drift["reasons"])
    if run_id:
        reason += f" (waferflow_monitor run {run_id}"
        reason += f", MLflow drift run {drift['mlflow_run_id']})" if drift.get("mlflow_run_id") else ")"
    return {"reason": reason}


def shadow_step(project: Path) -> dict[str, Any]:
    """The shadow report when a challenger exists (and the gate again when it needs the report)."""
    from waferflow.monitoring.monitor import registry_aliases, run_shadow_report
    from waferflow.stages.layout import Layout
    from waferflow.stages.promotion import judge

    p = _params(project)
    aliases = registry_aliases(p, project)
    if "challenger" not in aliases:
        return {"ran": False, "log": [f"shadow: no challenger in the registry (aliases: {aliases or 'none'}); "
                                      "nothing to compare"]}
    try:
        report = run_shadow_report(p, project, Path(p.gate.shadow_report))
    except ValueError as exc:  # the challenger has not served any wafer in the window yet
        return {"ran": False, "log": [f"shadow: challenger v{aliases['challenger']}: {exc}"]}
    lab = report["labeled"]
    lines = [f"shadow: challenger v{report['challenger']['model_version']} vs champion "
             f"v{report['champion']['model_version']} on {report['wafers']} live wafers: agreement "
             f"{report['agreement']:.1%}" + (f"; accuracy on {lab['wafers']} labeled {lab['champion_accuracy']:.3f} "
                                             f"(champion) vs {lab['challenger_accuracy']:.3f}" if lab else ""),
             f"shadow: p95 latency {report['champion']['latency_ms_p95']} vs "
             f"{report['challenger']['latency_ms_p95']} ms/wafer; report {Path(project) / p.gate.shadow_report}"]
    out = {"ran": True, "wafers": report["wafers"], "agreement": report["agreement"], "gate": None}
    if p.gate.require_shadow and report["wafers"] >= p.gate.min_shadow_wafers:
        result = judge(p, Layout(Path(project)), report["challenger"]["model_version"])
        out["gate"] = {k: result.get(k) for k in ("decision", "reason", "aliases")}
        lines.append(f"gate (with the shadow rules): {result['decision']} - {result['reason']}")
    elif p.gate.require_shadow:
        lines.append(f"gate: waits for {p.gate.min_shadow_wafers} shadow wafers (has {report['wafers']})")
    return {**out, "log": lines}
