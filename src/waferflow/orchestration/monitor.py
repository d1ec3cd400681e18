"""What the ``waferflow_monitor`` DAG decides between its tasks (no Airflow import, no ML import:
it runs in Airflow's own Python).

The DAG's ``drift_check`` and ``shadow_report`` tasks run the stage table's ``drift`` and
``shadow`` entries as ``python -m waferflow.stages <stage> --json`` in the ML environment, exactly as the
retrain DAG's tasks run the DVC stages; the last line of their output (the stage's values) is
the task's XCom. :func:`retrain_conf` turns the drift values into the retrain DAG's trigger conf.

Example:
    >>> retrain_conf({"retrain_recommended": True, "reasons": ["fail_ratio drifted"]}, "manual__1")
    {'reason': 'drift: fail_ratio drifted (waferflow_monitor run manual__1)'}
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["retrain_conf", "stage_values"]


def stage_values(xcom: str | None) -> dict[str, Any]:
    """A stage task's values from its XCom (the JSON last line ``--json`` prints)."""
    if not xcom:
        raise ValueError("the stage task published nothing: see its log")
    return json.loads(xcom)


def retrain_conf(drift: dict[str, Any], run_id: str = "") -> dict[str, str]:
    """The conf ``waferflow_retrain`` is triggered with: why, and which monitor run decided it."""
    reason = "drift: " + "; ".join(drift["reasons"])
    if run_id:
        reason += f" (waferflow_monitor run {run_id}"
        reason += f", MLflow drift run {drift['mlflow_run_id']})" if drift.get("mlflow_run_id") else ")"
    return {"reason": reason}
