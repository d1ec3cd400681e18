"""What the ``waferflow_retrain`` Airflow DAG does, as plain functions (no Airflow import here,
so it is unit-tested without a scheduler and the DAG file stays thin).

A triggered run never edits the user's checkout. :func:`prepare_workspace` copies the project's
working tree (git-tracked and untracked-not-ignored files: code, ``dvc.yaml``, ``dvc.lock``,
``params.yaml``, files dropped into ``data/raw``) to ``.cache/airflow/runs/<run id>/``, shares the
project's DVC cache (so stages whose inputs did not change are restored from DVC's run cache in
seconds instead of re-running), applies the parameters from the Airflow trigger form to that
copy's ``params.yaml`` and records the difference. Every stage task then runs
``dvc repro --single-item <stage>`` there, with the project's MLflow store, so models land in the
one registry and the gate moves the one ``champion`` alias. :func:`summarise` reads what the
stages wrote and says what happened.

Example:
    >>> from waferflow.orchestration.retrain import RETRAIN_STAGES
    >>> RETRAIN_STAGES[0], RETRAIN_STAGES[-1]
    ('generate', 'gate')
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

__all__ = [
    "RETRAIN_STAGES",
    "SIDE_STAGES",
    "ALL_STAGES",
    "STAGE_POLICIES",
    "ENCODERS",
    "stage_command",
    "trigger_defaults",
    "prepare_workspace",
    "summarise",
    "format_summary",
    "experiment_id",
    "RunFailed",
    "runs_dir",
]

from waferflow.layout import Layout, RUN_RECORD  # noqa: E402 - light (no ML import): Airflow's Python runs this
from waferflow.stages import STAGES, Retry, stage  # noqa: E402

#: The DVC stages on the main chain, in ``dvc.yaml`` order (from the stage table).
RETRAIN_STAGES = tuple(s.name for s in STAGES if s.dvc and s.after is None)
#: Stages off the main chain: stage -> the stage it runs after. A failed annotation queue does not
#: hold back promotion.
SIDE_STAGES = {s.name: s.after for s in STAGES if s.dvc and s.after is not None}
ALL_STAGES = (*RETRAIN_STAGES, *SIDE_STAGES)

#: Encoders offered in the trigger form (smp ResNets: the model's ONNX export and the gate's
#: latency rule are measured on these).
ENCODERS = ("resnet18", "resnet34", "resnet50")

#: Directories a workspace has itself: ``data/generated`` is made by the generate stage and
#: ``data/raw`` is copied. Any other relative ingest source means a path in the project.
WORKSPACE_DATA = ("data/generated", "data/raw")


#: Retries and time limit of each stage's task (the stage table's).
STAGE_POLICIES: dict[str, Retry] = {name: stage(name).retry for name in ALL_STAGES}


def stage_command(name: str) -> str:
    """The shell command a DAG task runs for a stage of the table, in the project (or a run's
    workspace) with the ML environment first on ``PATH``: ``dvc repro`` for a DVC stage (so
    unchanged stages are restored from DVC's run cache), the table's runner for the others. Both
    print the stage's summary lines; ``--json`` makes the values the last line (the XCom)."""
    entry = stage(name)
    if entry.dvc:
        # && : a failed stage fails the task (bash would go on to the next line and exit 0)
        run = f"dvc repro --single-item {name} && python -m waferflow.stages {name} --result"
    else:
        run = f"python -m waferflow.stages {name} --json"
    return f'echo "waferflow: {run.split(" && ")[0]} in $PWD"\n{run}\n'


class RunFailed(RuntimeError):
    """A stage of the run did not succeed (raised by the summary after it reported why)."""


def runs_dir(project: Path) -> Path:
    return Path(project) / ".cache" / "airflow" / "runs"


# the trigger form; ``reason`` (why this run: the monitor DAG names the drift) changes no parameter
TRIGGER_KEYS = ("data_sources", "epochs", "encoder", "force_promote", "reason")


def trigger_defaults(project: Path) -> dict[str, Any]:
    """The trigger form's defaults: what ``params.yaml`` says now (so an untouched form changes nothing)."""
    params = yaml.safe_load((Path(project) / "params.yaml").read_text()) or {}
    return {
        "data_sources": list(params.get("ingest", {}).get("sources", ["data/generated", "data/raw"])),
        "epochs": int(params.get("train", {}).get("max_epochs", 1)),
        "encoder": str(params.get("model", {}).get("encoder_name", "resnet18")),
        "force_promote": bool(params.get("gate", {}).get("force_promote", False)),
        "reason": "",
    }


def _safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"


def _working_tree(project: Path) -> list[str]:
    """Files of the project's working tree, as git sees it (ignored files and outputs excluded)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=project,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(
            f"{project} is not a git checkout (git ls-files failed: {exc}); "
            "the retrain DAG copies the working tree git knows about"
        ) from exc
    return [rel for rel in out.decode().split("\0") if rel]


def _copy_tree(project: Path, dest: Path) -> int:
    """Copy the working tree. Files under ``data/raw`` (user data, possibly large, only ever read
    by ingest) are hard-linked where the file system allows; everything else is copied, because
    DVC rewrites files such as ``dvc.lock`` in place and must never write through to the user's."""
    n = 0
    for rel in _working_tree(project):
        src = project / rel
        if not src.is_file():
            continue  # deleted but still in the index
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            if not rel.startswith("data/raw/"):
                raise OSError("copy")
            os.link(src, dest / rel)
        except OSError:
            shutil.copy2(src, dest / rel)
        n += 1
    return n


def _source_path(value: str, project: Path) -> str:
    """An ingest source as the workspace must spell it."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    norm = Path(os.path.normpath(value)).as_posix()
    if any(norm == d or norm.startswith(d + "/") for d in WORKSPACE_DATA):
        return norm
    return str((project / path).resolve())


def _set(tree: dict, dotted: str, value: Any, changes: list[dict]) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
    old = node.get(leaf)
    if old != value:
        node[leaf] = value
        changes.append({"param": dotted, "from": old, "to": value})


def apply_overrides(params: dict, conf: dict[str, Any], project: Path) -> list[dict]:
    """Apply trigger-form values to a params tree in place; returns what changed."""
    changes: list[dict] = []
    current = params.get("ingest", {}).get("sources", list(WORKSPACE_DATA))
    sources = conf.get("data_sources")
    sources = current if sources is None else [sources] if isinstance(sources, str) else sources
    sources = [s.strip() for s in sources if s and s.strip()]
    if not sources:
        raise ValueError("data_sources is empty: give at least one file or folder to ingest")
    resolved = [_source_path(s, project) for s in sources]
    if resolved != current:
        _set(params, "ingest.sources", resolved, changes)
    for key, dotted, kind in (
        ("epochs", "train.max_epochs", int),
        ("encoder", "model.encoder_name", str),
        ("force_promote", "gate.force_promote", bool),
    ):
        if conf.get(key) is not None:
            try:  # pydantic's conversions: "3" -> 3, "false" -> False, "many" -> error
                value = TypeAdapter(kind).validate_python(conf[key])
            except ValidationError as exc:
                raise ValueError(f"trigger parameter {key}={conf[key]!r} is not a valid {kind.__name__}") from exc
            _set(params, dotted, value, changes)
    unknown = sorted(set(conf) - set(TRIGGER_KEYS))
    if unknown:
        raise ValueError(f"unknown trigger parameter(s) {unknown}; known: {', '.join(TRIGGER_KEYS)}")
    return changes


def prepare_workspace(project: Path, run_id: str, conf: dict[str, Any], keep: int = 5) -> dict[str, Any]:
    """Make the run's workspace; returns what the stage tasks need (workspace, env, changes).

    Raises ``ValueError`` (naming the parameter) when the trigger form's values do not make a
    valid ``params.yaml``; nothing has run at that point.
    """
    from waferflow.config import Params
    from waferflow.registry.tracking import configure_mlflow, git_commit, resolved_tracking_uri

    project = Path(project).resolve()
    if not (project / ".dvc" / "config").is_file():
        raise RuntimeError(f"{project} is not a waferflow checkout (no .dvc/config); set WAFERFLOW_PROJECT_DIR")
    base = runs_dir(project)
    ws = base / _safe_name(run_id)
    if ws.exists():  # a retried prepare: the workspace is ours to rebuild
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    n_files = _copy_tree(project, ws)

    params = yaml.safe_load((ws / "params.yaml").read_text()) or {}
    changes = apply_overrides(params, conf, project)
    try:
        typed = Params.model_validate(params)
    except Exception as exc:  # pydantic names the field
        raise ValueError(f"trigger parameters give an invalid params.yaml: {exc}") from exc
    if changes:
        (ws / "params.yaml").write_text(
            f"# params.yaml of Airflow run {run_id}: the project's file with {len(changes)} trigger override(s)\n"
            + yaml.safe_dump(params, sort_keys=False)
        )

    external = _track_external_sources(ws, params.get("ingest", {}).get("sources", []))
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    (ws / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {project / '.dvc' / 'cache'}\n")

    tracking_uri = resolved_tracking_uri(typed.mlflow, project)
    configure_mlflow(typed.mlflow, project)  # the experiment keeps the project's artifact root
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYTHONPATH": str(ws / "src"),  # run the copied code, which dvc.yaml's deps hash
    }
    # the train stage tags its MLflow run with this run's id and reason (Layout.run_context)
    record = {
        "run_id": run_id,
        "project": str(project),
        "workspace": str(ws),
        "files": n_files,
        "reason": str(conf.get("reason") or ""),
        "git_commit": git_commit(project),
        "changes": changes,
        "external_sources": external,
        "env": env,
    }
    (ws / RUN_RECORD).write_text(json.dumps(record, indent=2, default=str))
    _prune(base, keep=keep, current=ws)
    return record


def _track_external_sources(ws: Path, sources: list[str]) -> list[str]:
    """Make ingest sources outside the workspace dependencies of the copy's ``ingest`` stage, so
    that DVC re-runs ingest when their content changes (not only when the list does) instead of
    restoring a stale result from its run cache."""
    external = [s for s in sources if Path(s).is_absolute()]
    if external:
        dvc_yaml = ws / "dvc.yaml"
        spec = yaml.safe_load(dvc_yaml.read_text())
        deps = spec["stages"]["ingest"].setdefault("deps", [])
        deps.extend(s for s in external if s not in deps)
        dvc_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    return external


def _prune(base: Path, keep: int, current: Path) -> None:
    """Keep the newest ``keep`` workspaces (the current one always)."""
    runs = sorted((p for p in base.iterdir() if p.is_dir() and p != current), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def experiment_id(workspace: Path, tracking_uri: str) -> str | None:
    """The MLflow experiment id the run's params name (for links), or None if unreachable."""
    try:
        import mlflow

        name = (
            (yaml.safe_load((Path(workspace) / "params.yaml").read_text()) or {})
            .get("mlflow", {})
            .get("experiment", "waferflow")
        )
        exp = mlflow.MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
        return exp.experiment_id if exp else None
    except Exception:  # a link is a convenience; the summary must not fail on it
        return None


def mlflow_links(ui: str, train_run: dict | None, experiment_id: str | None) -> dict[str, str]:
    ui = ui.rstrip("/")
    links: dict[str, str] = {}
    if train_run and train_run.get("run_id") and experiment_id:
        links["train_run"] = f"{ui}/#/experiments/{experiment_id}/runs/{train_run['run_id']}"
    if train_run and train_run.get("model_name") and train_run.get("version"):
        links["model_version"] = f"{ui}/#/models/{train_run['model_name']}/versions/{train_run['version']}"
    return links


def summarise(
    workspace: Path,
    states: dict[str, str | None],
    mlflow_ui: str = "http://127.0.0.1:5000",
    experiment_id: str | None = None,
) -> dict[str, Any]:
    """What the run did: stage states, where it stopped and why, gate decision, metrics, links."""
    ws = Path(workspace)
    stages = {s: (states.get(s) or "not run") for s in ALL_STAGES}
    failed = next((s for s in ALL_STAGES if stages[s] != "success"), None)
    out: dict[str, Any] = {"workspace": str(ws), "stages": stages, "ok": failed is None}
    record = _read(ws / RUN_RECORD) or {}
    out["param_changes"] = record.get("changes", [])
    if record.get("reason"):
        out["reason_for_run"] = record["reason"]
    if failed:
        out["stopped_at"] = failed
        if failed == "validate" or stages.get("validate") == "failed":
            v = _read(ws / "reports/validation/validation.json") or {}
            out["reason"] = "data-quality gate failed: " + (
                f"{v.get('rejected')} of {v.get('checked')} records rejected "
                f"(limit {v.get('max_reject_fraction')}); see {ws / 'data/quarantine/validate'}"
                if v
                else "see the validate task's log"
            )
        else:
            out["reason"] = f"stage '{failed}' {stages[failed]}; see its task log"
    # Only what this run's stages wrote: the workspace starts with the checkout's metrics files.
    layout = Layout(ws)
    results = {name: stage(name).result(layout) for name in ALL_STAGES if stages[name] == "success"}
    out["stage_summaries"] = {name: r.lines for name, r in results.items() if r is not None}
    values = {name: r.values for name, r in results.items() if r is not None}
    if "gate" in values:
        out["gate"] = {
            k: values["gate"].get(k)
            for k in ("decision", "reason", "challenger_version", "champion_version", "aliases")
        }
    if "evaluate" in values:
        out["metrics"] = values["evaluate"]
    if "al_query" in values:
        q = values["al_query"]
        out["annotation_queue"] = {
            "size": q["selected"],
            "round": q["round"],
            "strategy": q["strategy"],
            "path": str(ws / "data/al/queue/queue.csv"),
        }
    train_run = values.get("train")
    if train_run:
        out["model"] = {
            k: train_run.get(k) for k in ("model_name", "version", "run_id", "epochs_trained", "best_val_macro_f1")
        }
    out["mlflow"] = mlflow_links(mlflow_ui, train_run, experiment_id)
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the lines an operator reads in the task log: each finished stage's own
    summary lines (the stage table's, as ``waferflow <stage>`` prints them)."""
    lines = [
        "waferflow retrain: "
        + ("completed" if summary["ok"] else f"STOPPED at {summary['stopped_at']}: {summary['reason']}")
    ]
    if summary.get("reason_for_run"):
        lines.append(f"triggered because: {summary['reason_for_run']}")
    lines.append("stages: " + ", ".join(f"{k}={v}" for k, v in summary["stages"].items()))
    for ch in summary.get("param_changes", []):
        lines.append(f"param {ch['param']}: {ch['from']!r} -> {ch['to']!r}")
    for name, stage_lines in summary.get("stage_summaries", {}).items():
        lines += [f"[{name}] {line}" for line in stage_lines]
    for name, url in summary.get("mlflow", {}).items():
        lines.append(f"mlflow {name}: {url}")
    lines.append(f"workspace: {summary['workspace']}")
    return "\n".join(lines)
