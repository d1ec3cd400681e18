"""waferflow_monitor: the daily look at production — drift, and the challenger in the shadow.

drift_check -> retrain_needed -> trigger_retrain
shadow_report
index_refresh

Both stage tasks run the stage table's non-DVC entries the way the retrain DAG runs the DVC
stages: a shell command in the ML environment (``python -m waferflow.stages <stage> --json`` in
the project), whose summary lines are the task log and whose values (the last line, JSON) are the
task's XCom. No ML code runs inside Airflow's own Python.

* ``drift_check`` (``pipelines/drift.py``) reads the prediction log's last ``drift.window_days``
  days (the champion's answers; the challenger's shadow rows left out) and compares it with the
  reference — the features of the production maps the model was trained beside and the
  champion's predictions on them — with evidently (``params.yaml → drift``). It writes
  ``metrics/drift.json`` and the evidently report ``metrics/drift.html`` in the project and logs
  an MLflow run ``drift``. A window with fewer than ``drift.min_wafers`` wafers is not judged.
* ``retrain_needed`` lets the run go on only when ``retrain_recommended``; its log says why
  either way. ``trigger_retrain`` then starts ``waferflow_retrain`` with a conf whose ``reason``
  names the drifted features and this run (the retrain's prepare task logs it, the train run is
  tagged with it).
* ``shadow_report`` (``pipelines/shadow.py``), when the registry has a ``challenger``: champion vs
  challenger on the live wafers both answered (``metrics/shadow.json`` + MLflow run ``shadow``);
  with ``gate.require_shadow`` and ``gate.min_shadow_wafers`` reached, the gate judges the
  challenger again with the live-traffic rules (alias moves are compare-and-set under the
  registry's alias lock, which the retrain DAG's gate takes too).
* ``index_refresh`` (``pipelines/index_log.py``): the prediction log's wafers of the last
  ``index.log_days`` days embedded into ``data/index_log``, so ``waferflow similar`` and
  ``/v1/similar`` answer yesterday's production wafers as past wafers beside the labeled ones.

Environment (optional): ``WAFERFLOW_PROJECT_DIR`` (default: the checkout holding this file),
``WAFERFLOW_ML_BIN`` (the ML environment's ``bin``; default: this interpreter's).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

from waferflow.orchestration.monitor import retrain_conf, stage_values
from waferflow.orchestration.retrain import stage_command
from waferflow.stages import stage

PROJECT = Path(os.environ.get("WAFERFLOW_PROJECT_DIR") or Path(__file__).resolve().parents[1]).resolve()
ML_BIN = os.environ.get("WAFERFLOW_ML_BIN") or str(Path(sys.executable).parent)
log = logging.getLogger("waferflow.monitor")


def stage_task(name: str, task_id: str) -> BashOperator:
    """A task running stage ``name`` of the table in the project, with its retry policy."""
    entry = stage(name)
    return BashOperator(
        task_id=task_id,
        bash_command=f'export PATH="{ML_BIN}:$PATH"\n' + stage_command(name),
        cwd=str(PROJECT),
        retries=entry.retry.retries,
        execution_timeout=entry.retry.timeout,
        doc_md=f"`python -m waferflow.stages {name} --json`: {entry.help} "
        f"Retries {entry.retry.retries}: {entry.retry.why}",
    )


with DAG(
    dag_id="waferflow_monitor",
    description="Daily: drift of the production stream (retrain when recommended) and the shadow report",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "waferflow", "retry_delay": timedelta(minutes=5)},
    tags=["waferflow", "monitoring"],
    doc_md=__doc__,
) as dag:
    drift_check = stage_task("drift", "drift_check")

    @task.short_circuit
    def retrain_needed(ti=None, run_id=None):
        """Go on to the retrain trigger only when the drift check recommends it."""
        drift = stage_values(ti.xcom_pull(task_ids="drift_check"))
        why = "; ".join(drift["reasons"])
        log.info(
            "decision: %s, because %s",
            "trigger waferflow_retrain" if drift["retrain_recommended"] else "no retrain",
            why,
        )
        return drift["retrain_recommended"] and retrain_conf(drift, run_id)

    trigger = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="waferflow_retrain",
        conf="{{ ti.xcom_pull(task_ids='retrain_needed') | tojson }}",
        wait_for_completion=False,  # the retrain takes its time; its own summary says what it decided
        doc_md="Starts `waferflow_retrain` with conf `{reason: ...}` (the drift reasons and this run).",
    )

    drift_check >> retrain_needed() >> trigger
    stage_task("shadow", "shadow_report")
    stage_task("index_log", "index_refresh")
