"""waferflow_monitor: the daily look at production — drift, and the challenger in the shadow.

drift_check -> retrain_needed -> trigger_retrain
shadow_report

* ``drift_check`` reads the prediction log's last ``drift.window_days`` days (the champion's
  answers; the challenger's shadow rows left out) and compares it with the reference — the
  features of the production maps the model was trained beside and the champion's predictions on
  them — with evidently (``params.yaml → drift``). It writes ``metrics/drift.json`` and the
  evidently report ``metrics/drift.html`` in the project and logs an MLflow run ``drift``. A
  window with fewer than ``drift.min_wafers`` wafers is not judged.
* ``retrain_needed`` lets the run go on only when ``retrain_recommended``; its log says why
  either way. ``trigger_retrain`` then starts ``waferflow_retrain`` with a conf whose ``reason``
  names the drifted features and this run (the retrain's prepare task logs it, the train run is
  tagged with it).
* ``shadow_report``, when the registry has a ``challenger``: champion vs challenger on the live
  wafers both answered (``metrics/shadow.json`` + MLflow run ``shadow``); with
  ``gate.require_shadow`` and ``gate.min_shadow_wafers`` reached, the gate judges the
  challenger again with the live-traffic rules.

Environment: ``WAFERFLOW_PROJECT_DIR`` (default: the checkout holding this file).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

PROJECT = Path(os.environ.get("WAFERFLOW_PROJECT_DIR") or Path(__file__).resolve().parents[1]).resolve()
log = logging.getLogger("waferflow.monitor")


def _say(result: dict) -> dict:
    for line in result.pop("log"):
        log.info(line)
    return result


with DAG(
    dag_id="waferflow_monitor",
    description="Daily: drift of the production stream (retrain when recommended) and the shadow report",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "waferflow", "retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["waferflow", "monitoring"],
    doc_md=__doc__,
) as dag:

    @task(execution_timeout=timedelta(minutes=30))
    def drift_check() -> dict:
        """evidently drift check of the log window against the reference (metrics/drift.json)."""
        from waferflow.orchestration.monitor import drift_step

        return _say(drift_step(PROJECT))

    @task.short_circuit
    def retrain_needed(drift: dict, run_id=None) -> bool:
        """Go on to the retrain trigger only when the drift check recommends it."""
        from waferflow.orchestration.monitor import retrain_conf

        if drift["retrain_recommended"]:
            log.info("decision: trigger waferflow_retrain, because %s", "; ".join(drift["reasons"]))
        else:
            log.info("decision: no retrain, because %s", "; ".join(drift["reasons"]))
        return drift["retrain_recommended"] and retrain_conf(drift, run_id)

    trigger = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="waferflow_retrain",
        conf="{{ ti.xcom_pull(task_ids='retrain_needed') | tojson }}",
        wait_for_completion=False,  # the retrain takes its time; its own summary says what it decided
        doc_md="Starts `waferflow_retrain` with conf `{reason: ...}` (the drift reasons and this run).",
    )

    @task(execution_timeout=timedelta(minutes=30))
    def shadow_report() -> dict:
        """Champion vs challenger on live traffic, when a challenger exists (metrics/shadow.json)."""
        from waferflow.orchestration.monitor import shadow_step

        return _say(shadow_step(PROJECT))

    retrain_needed(drift_check()) >> trigger
    shadow_report()
