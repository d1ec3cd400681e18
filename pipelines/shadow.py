"""Stage shadow (not a DVC stage: its input is live traffic): champion vs challenger on the
wafers both answered in the prediction log's window, with accuracy on the wafers labeled through
active learning; when ``gate.require_shadow`` holds and ``gate.min_shadow_wafers`` are reached,
the gate judges the challenger again with the live-traffic rules.

The monitor DAG runs ``python -m waferflow.stages shadow --json`` daily; ``waferflow shadow`` runs
:func:`report` (after serving the files it is given). Outputs: ``gate.shadow_report``
(``metrics/shadow.json``), an MLflow run ``shadow``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout


def report(
    params: Params,
    layout: Layout,
    out: Path,
    labels: dict[tuple[str, str], str] | None = None,
    extra: dict | None = None,
    mlflow_run: bool = True,
) -> dict:
    """Champion vs challenger over the log window; writes ``out`` and an MLflow run ``shadow``.

    Only rows of the versions the ``champion`` / ``challenger`` aliases name now are paired (older
    versions in the window are left out). Raises ``ValueError`` when there is no challenger or no
    wafer both models predicted."""
    from waferflow.monitoring.shadow import shadow_report
    from waferflow.monitoring.windows import prediction_log, shadow_labels
    from waferflow.registry.aliases import aliases_of
    from waferflow.registry.tracking import configure_mlflow, log_run

    configure_mlflow(params.mlflow, layout.root)
    aliases = aliases_of(params.mlflow.registered_model)
    if "challenger" not in aliases or "champion" not in aliases:
        raise ValueError(
            f"{params.mlflow.registered_model} has no champion and challenger to compare (aliases: {aliases or 'none'})"
        )
    plog = prediction_log(params, layout.root)
    rows = plog.read(days=params.drift.window_days)
    wanted = ((rows["alias"] == "champion") & (rows["model_version"].astype(str) == aliases["champion"])) | (
        (rows["alias"] == "challenger") & (rows["model_version"].astype(str) == aliases["challenger"])
    )
    merged = {**shadow_labels(params, layout.root), **(labels or {})}
    result = {
        **shadow_report(rows[wanted], merged),
        "window_days": params.drift.window_days,
        "skipped_log_parts": plog.skipped_parts,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    out = layout.resolve(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result, sort_keys=False)
    if mlflow_run:
        lab = result["labeled"] or {}
        metrics = {
            "agreement": result["agreement"],
            "wafers": result["wafers"],
            **{
                f"{side}_{k}": result[side][k]
                for side in ("champion", "challenger")
                for k in ("mean_confidence", "latency_ms_p95")
                if result[side][k] is not None
            },
            **{f"labeled_{k}": v for k, v in lab.items()},
        }
        result["mlflow_run_id"] = log_run(
            "shadow",
            params.mlflow,
            layout.root,
            metrics,
            {
                "champion_version": result["champion"]["model_version"],
                "challenger_version": result["challenger"]["model_version"],
            },
            [out],
        )
        write_json(out, result, sort_keys=False)
    return result


def run(params: Params, layout: Layout) -> dict:
    """The shadow report when a challenger exists, and the gate again when it needs the report."""
    from waferflow.registry.aliases import aliases_of
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.stages import stage

    configure_mlflow(params.mlflow, layout.root)
    aliases = aliases_of(params.mlflow.registered_model)
    if "challenger" not in aliases:
        return {
            "ran": False,
            "why": f"no challenger in the registry (aliases: {aliases or 'none'}); nothing to compare",
        }
    try:
        shadow = report(params, layout, Path(params.gate.shadow_report))
    except ValueError as exc:  # the challenger has not served any wafer in the window yet
        return {"ran": False, "why": f"challenger v{aliases['challenger']}: {exc}"}
    values = {"ran": True, "report": shadow, "path": str(layout.resolve(params.gate.shadow_report)), "gate": None}
    if params.gate.require_shadow and shadow["wafers"] >= params.gate.min_shadow_wafers:
        judged = stage("gate").module().judge(params, layout, shadow["challenger"]["model_version"])
        values["gate"] = {k: judged.get(k) for k in ("decision", "reason", "aliases")}
    elif params.gate.require_shadow:
        values["gate_waits"] = {"needs": params.gate.min_shadow_wafers, "has": shadow["wafers"]}
    return values


def result(layout: Layout) -> dict:
    """The last report, as ``run`` returns it (the gate's verdict is in ``metrics/gate.json``)."""
    from waferflow.config import load_params

    path = layout.resolve(load_params(layout / "params.yaml").gate.shadow_report)
    return {"ran": True, "report": json.loads(path.read_text()), "path": str(path), "gate": None}


def summarise(v: dict) -> list[str]:
    if not v["ran"]:
        return [f"shadow: {v['why']}"]
    r, lab = v["report"], v["report"]["labeled"]
    lines = [
        f"shadow: challenger v{r['challenger']['model_version']} vs champion v{r['champion']['model_version']} "
        f"on {r['wafers']} live wafers: agreement {r['agreement']:.1%}"
        + (
            f"; accuracy on {lab['wafers']} labeled {lab['champion_accuracy']:.3f} (champion) vs "
            f"{lab['challenger_accuracy']:.3f}"
            if lab
            else ""
        ),
        f"shadow: p95 latency {r['champion']['latency_ms_p95']} vs {r['challenger']['latency_ms_p95']} ms/wafer; "
        f"report {v['path']}",
    ]
    if v.get("gate"):
        lines.append(f"gate (with the shadow rules): {v['gate']['decision']} - {v['gate']['reason']}")
    elif v.get("gate_waits"):
        lines.append(f"gate: waits for {v['gate_waits']['needs']} shadow wafers (has {v['gate_waits']['has']})")
    return lines


if __name__ == "__main__":
    from waferflow.stages import main

    main("shadow")
