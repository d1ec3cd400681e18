"""waferflow_retrain: the DVC pipeline as an Airflow 3 DAG, monthly and on demand from the UI.

prepare -> generate -> ingest -> validate -> split -> augment -> patterns -> train
        -> evaluate -> novelty -> export -> gate -> summary
           evaluate -> index -> summary
                       novelty -> al_query -> summary

* ``prepare`` copies the project's working tree into ``.cache/airflow/runs/<run id>/`` (the
  user's checkout and ``params.yaml`` are never edited), shares the project's DVC cache and
  applies the trigger form's values to the copy's ``params.yaml``; the task log lists every
  changed parameter.
* Each stage task (the stage table's order and retry policy, ``waferflow.stages``) runs
  ``dvc repro --single-item <stage>`` in that copy with the ML environment's ``dvc`` and the
  project's MLflow store, then publishes what the stage wrote as its XCom (one JSON line).
  Unchanged stages are restored from DVC's run cache, so a run with nothing new finishes in
  seconds and trains nothing. The monitor DAG runs its stages the same way.
* ``validate`` has no retries: when the great-expectations suite rejects more than
  ``validate.max_reject_fraction`` the task fails and nothing downstream (training included) runs.
* ``al_query`` (beside export/gate) writes the active-learning annotation queue; its XCom has
  the queue's size and place.
* ``summary`` always runs: it logs each finished stage's summary (the lines ``waferflow <stage>``
  prints), returns (XCom) the gate decision, metrics and MLflow links, or the stage where the run
  stopped and why, and then fails the run if a stage failed.

Environment (optional): ``WAFERFLOW_PROJECT_DIR`` (default: the checkout holding this file),
``WAFERFLOW_ML_BIN`` (the ML environment's ``bin``; default: this interpreter's),
``WAFERFLOW_MLFLOW_UI`` (base URL for links, default http://127.0.0.1:5000),
``WAFERFLOW_KEEP_RUNS`` (run workspaces kept, default 5).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task

from waferflow.orchestration.retrain import (
    ALL_STAGES,
    ENCODERS,
    RETRAIN_STAGES,
    SIDE_STAGES,
    STAGE_POLICIES,
    RunFailed,
    experiment_id,
    format_summary,
    prepare_workspace,
    stage_command,
    summarise,
    trigger_defaults,
)

PROJECT = Path(os.environ.get("WAFERFLOW_PROJECT_DIR") or Path(__file__).resolve().parents[1]).resolve()
ML_BIN = os.environ.get("WAFERFLOW_ML_BIN") or str(Path(sys.executable).parent)
DEFAULTS = trigger_defaults(PROJECT)
ENV_KEYS = ("MLFLOW_TRACKING_URI", "PYTHONPATH")
PREPARED = "ti.xcom_pull(task_ids='prepare')"
log = logging.getLogger("waferflow.retrain")

with DAG(
    dag_id="waferflow_retrain",
    description="Retrain the wafer-map model through the DVC stages; the gate decides promotion",
    schedule="@monthly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs would race for the registry's champion alias
    default_args={"owner": "waferflow", "retry_delay": timedelta(minutes=2)},
    tags=["waferflow", "training"],
    doc_md=__doc__,
    params={
        "data_sources": Param(
            DEFAULTS["data_sources"],
            type="array",
            items={"type": "string"},
            title="Data sources",
            description="Files or folders to ingest (LSWMD.pkl, .npz, die-list CSV, PNG/TIFF, "
            "canonical Parquet), one per line; absolute or relative to the project. "
            "Default: params.yaml ingest.sources",
        ),
        "epochs": Param(
            DEFAULTS["epochs"],
            type="integer",
            minimum=1,
            title="Epochs",
            description="train.max_epochs (early stopping may end sooner)",
        ),
        "encoder": Param(
            DEFAULTS["encoder"],
            type="string",
            title="Encoder",
            enum=sorted(set(ENCODERS) | {DEFAULTS["encoder"]}),
            description="U-Net encoder (model.encoder_name)",
        ),
        "force_promote": Param(
            DEFAULTS["force_promote"],
            type="boolean",
            title="Force promote",
            description="Promote even if a gate rule fails (recorded as 'forced' on the model version)",
        ),
        "reason": Param(
            DEFAULTS["reason"],
            type="string",
            title="Reason",
            description="Why this run (free text; the monitor DAG names the drift). Logged, and tagged "
            "on the train run as retrain_reason; changes no parameter",
        ),
    },
) as dag:

    @task(retries=1, execution_timeout=timedelta(minutes=15))
    def prepare(params=None, run_id=None) -> dict:
        """Copy the checkout into this run's workspace and apply the trigger form's parameters."""
        record = prepare_workspace(PROJECT, run_id, dict(params), keep=int(os.environ.get("WAFERFLOW_KEEP_RUNS", "5")))
        log.info("project %s -> workspace %s (%d files)", record["project"], record["workspace"], record["files"])
        log.info("reason for this run: %s", record["reason"] or "(none given: schedule or manual trigger)")
        for ch in record["changes"]:
            log.info("param %s: %r -> %r (this run only)", ch["param"], ch["from"], ch["to"])
        if not record["changes"]:
            log.info("no parameter differs from the project's params.yaml")
        return record

    stage_tasks = {
        stage: BashOperator(
            task_id=stage,
            bash_command=f'export PATH="{ML_BIN}:$PATH"\n' + stage_command(stage),
            cwd="{{ " + PREPARED + "['workspace'] }}",
            env={key: "{{ " + PREPARED + f"['env']['{key}'] }}}}" for key in ENV_KEYS},
            append_env=True,
            retries=STAGE_POLICIES[stage].retries,
            execution_timeout=STAGE_POLICIES[stage].timeout,
            doc_md=f"`dvc repro --single-item {stage}`; retries {STAGE_POLICIES[stage].retries}: "
            f"{STAGE_POLICIES[stage].why}",
        )
        for stage in ALL_STAGES
    }

    @task(trigger_rule="all_done")
    def summary(ti=None, dag_run=None) -> dict:
        """Gate decision, metrics and MLflow links (XCom); fails the run when a stage failed."""
        record = ti.xcom_pull(task_ids="prepare")
        if not record:
            raise RunFailed("prepare did not finish: see its log (invalid trigger parameters?)")
        states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id], task_ids=list(ALL_STAGES)).get(
            dag_run.run_id, {}
        )
        result = summarise(
            Path(record["workspace"]),
            states,
            mlflow_ui=os.environ.get("WAFERFLOW_MLFLOW_UI", "http://127.0.0.1:5000"),
            experiment_id=experiment_id(Path(record["workspace"]), record["env"]["MLFLOW_TRACKING_URI"]),
        )
        for line in format_summary(result).splitlines():
            log.info(line)
        ti.xcom_push(key="summary", value=result)  # kept on failure too, unlike a return value
        if not result["ok"]:
            raise RunFailed(f"stopped at {result['stopped_at']}: {result['reason']}")
        return result

    chain = [prepare(), *(stage_tasks[s] for s in RETRAIN_STAGES)]
    for upstream, downstream in zip(chain, chain[1:]):
        upstream >> downstream
    done = summary()
    chain[-1] >> done
    for side, after in SIDE_STAGES.items():
        stage_tasks[after] >> stage_tasks[side] >> done
