"""The ``waferflow`` command line: run pipeline stages, ingest files, inspect tables.

Example:
    $ waferflow --help
    $ waferflow ingest data/raw/LSWMD.pkl --out /tmp/lswmd.parquet
    $ waferflow info data/processed/train.parquet
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from waferflow.config import load_params
from waferflow.layout import Layout
from waferflow.stages import STAGES, stage

app = typer.Typer(
    help="waferflow: wafer-map defect pattern recognition pipeline.\n\n"
    "Pipeline stages (what `dvc repro` runs, in order): " + " -> ".join(s.name for s in STAGES if s.dvc) + ". "
    "`waferflow label import` brings annotators' labels back. `waferflow predict` serves the champion (and logs every "
    "prediction); `drift`, `drift-stream` and `shadow` watch production; `promote` / `rollback` move the champion by "
    "hand. Each reads params.yaml from the current directory (the project root) unless --params is given.",
    no_args_is_help=True,
    add_completion=False,
)
label_app = typer.Typer(help="Annotator labels for the active-learning queue.", no_args_is_help=True)
app.add_typer(label_app, name="label")
remote_app = typer.Typer(help="Configure where DVC stores data and models for a team.", no_args_is_help=True)
app.add_typer(remote_app, name="remote")

PARAMS_FILE = Path("params.yaml")
PROJECT = Layout()  # the current directory: a project root
PARAMS = typer.Option(PARAMS_FILE, "--params", "-p", help="Pipeline parameters file.")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def run_stage(name: str, params_path: Path = PARAMS_FILE) -> None:
    """Run one stage of the table in the current directory (the project root) with ``params_path``."""
    from waferflow.data.validation import ValidationFailed
    from waferflow.layout import Layout
    from waferflow.stages import stage

    try:
        result = stage(name).run(load_params(params_path), Layout())  # the project: the current directory
    except (ValidationFailed, FileNotFoundError, RuntimeError, ValueError) as exc:
        typer.secho(f"stage {name} failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    for line in result.lines:
        typer.echo(line)


def _register_stage_command(name: str, help_text: str) -> None:
    def command(params: Path = PARAMS) -> None:
        run_stage(name, params)

    app.command(name, help=help_text)(command)


def ingest_cmd(
    sources: Optional[list[Path]] = typer.Argument(None, help="Files or folders; default: ingest.sources in params."),
    out: Optional[Path] = typer.Option(None, help="Write the canonical table here instead of the pipeline's path."),
    quarantine: Optional[Path] = typer.Option(
        None,
        help="Where rejected rows/files are listed (default: beside "
        "--out as <name>.quarantine/, else data/quarantine/ingest).",
    ),
    params: Path = PARAMS,
) -> None:
    """Ingest wafer maps (LSWMD.pkl, .npz, CSV die lists and matrices, SEMI G85/E142 XML, PNG/TIFF, Parquet);
    without FILES or --out, the pipeline's ingest stage."""
    if sources is None and out is None:  # the pipeline's own ingest
        run_stage("ingest", params)
        return
    from waferflow.data.ingest import ingest

    p = load_params(params)
    target = out or PROJECT.ingested
    if quarantine is None:  # an ad-hoc run never overwrites the pipeline's quarantine
        quarantine = target.with_name(f"{target.stem}.quarantine") if out else PROJECT.quarantine / "ingest"
    try:
        report = ingest(
            [str(s) for s in (sources or p.ingest.sources)],
            target,
            quarantine,
            target.with_suffix(".report.json"),
            options=p.ingest.parser_options(),
        )
    except (FileNotFoundError, IsADirectoryError) as exc:
        _fail(str(exc))
    typer.echo(report.summary())
    typer.echo(
        f"wrote {target}" + (f"; rejects listed in {Path(quarantine) / 'rejects.csv'}" if report.rejected else "")
    )


# One command per entry of the stage table, in pipeline order (`waferflow --help` lists them as
# `dvc repro` runs them); ingest, drift and shadow take files as well.
_CUSTOM = {"ingest": ingest_cmd}
for _stage in STAGES:
    if _stage.dvc:
        if _stage.name in _CUSTOM:
            app.command(_stage.name, help=_stage.help)(_CUSTOM[_stage.name])
        else:
            _register_stage_command(_stage.name, _stage.help)
_register_stage_command("index_log", stage("index_log").help)  # live input: not in dvc repro, run by the monitor DAG


@label_app.command("import")
def label_import(
    file: Path = typer.Argument(..., help="CSV with wafer_id,label[,annotator] (e.g. a filled-in copy of queue.csv)."),
    annotator: Optional[str] = typer.Option(
        None,
        help="Who labeled, when the file has no annotator column (default: $WAFERFLOW_ANNOTATOR or the user name).",
    ),
    queue: Path = typer.Option(PROJECT.al_queue / "queue.parquet", help="The queue the labels answer."),
    params: Path = PARAMS,
) -> None:
    """Check annotator labels against the queue and the classes; merge the good ones with provenance,
    quarantine the rest with their reasons. Re-importing a file changes nothing."""
    from waferflow.active.labels import import_labels

    p = load_params(params)
    try:
        report = import_labels(file, queue, p.al.labels_dir, PROJECT.quarantine / "labels", annotator=annotator)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(report.summary())
    if report.accepted:
        typer.echo("next `dvc repro` trains on the enlarged labeled pool")


def _parse_files(files: list[Path], p) -> tuple[list, list[str]]:
    """Records of every readable file, and a line per rejected file or row (file, row, reason)."""
    from waferflow.data.parsers import FileRejected, parse_file

    records, problems = [], []
    for f in files:
        try:
            result = parse_file(f, p.ingest.parser_options())
        except (FileRejected, FileNotFoundError) as exc:
            problems.append(str(exc))
            continue
        records.extend(result.records)
        problems.extend(str(r) for r in result.rejects)
    return records, problems


@app.command()
def drift(
    files: Optional[list[Path]] = typer.Argument(
        None,
        help="The current window: wafer maps in any ingestible "
        "format. Default: the prediction log's last drift.window_days days.",
    ),
    reference: Path = typer.Option(
        PROJECT.validated,
        help="Reference wafers (canonical Parquet); its unlabeled production maps "
        "are used when it has any, else all of it.",
    ),
    out: Path = typer.Option(PROJECT.metrics, help="Folder for drift.json and the evidently drift.html."),
    mlflow_run: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the check as an MLflow run 'drift'."),
    params: Path = PARAMS,
) -> None:
    """Drift check of a window of wafer maps against the reference (evidently; params.yaml → drift)."""
    from waferflow.data.features import feature_frame
    from waferflow.layout import Layout
    from waferflow.monitoring.windows import current_window
    from waferflow.stages import stage

    p, layout = load_params(params), Layout(params.resolve().parent)  # the project: its log, registry, caches
    if files:
        records, problems = _parse_files(files, p)
        for problem in problems:
            typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
        current, source = feature_frame(r.die_grid for r in records), [str(f) for f in files]
    else:
        current, source = current_window(p, layout.root)
    drift_stage = stage("drift")
    try:
        summary = drift_stage.module().check(
            p, layout, current, source, out.resolve(), reference=reference.resolve(), mlflow_run=mlflow_run
        )
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    for line in drift_stage.summarise(summary):
        typer.echo(line)


@app.command("drift-stream")
def drift_stream(
    scenario: str = typer.Argument(..., help="unshifted, background, class_mix, wafer_size or novel_pattern."),
    out: Path = typer.Option(..., help="Canonical Parquet to write (refused if it exists)."),
    n: int = typer.Option(300, help="Wafers."),
    seed: int = typer.Option(1, help="Seed (the same seed gives the same stream)."),
    params: Path = PARAMS,
) -> None:
    """Write a generated production stream, shifted or not, to replay through predict and drift."""
    from waferflow.data.records import write_records
    from waferflow.monitoring.scenarios import stream

    if out.exists():
        _fail(f"{out} exists; it is not overwritten")
    try:
        records = stream(scenario, n, seed, load_params(params).synth)
    except ValueError as exc:
        _fail(str(exc))
    write_records(records, out)
    typer.echo(f"{len(records)} {scenario} wafers -> {out}")


@app.command()
def shadow(
    files: Optional[list[Path]] = typer.Argument(
        None,
        help="Wafer maps to serve with the champion while the "
        "challenger runs in the shadow (any ingestible format). "
        "Default: only report on the log window.",
    ),
    out: Path = typer.Option(PROJECT.metrics / "shadow.json", help="The shadow report."),
    params: Path = PARAMS,
) -> None:
    """Serve wafers with the champion while the challenger runs in the shadow; report both (log window)."""
    from waferflow.inference.engine import InferenceEngine
    from waferflow.layout import Layout
    from waferflow.monitoring.shadow import ShadowEngine
    from waferflow.monitoring.windows import prediction_log
    from waferflow.registry.tracking import configure_mlflow
    from waferflow.stages import stage

    p, layout = load_params(params), Layout(params.resolve().parent)
    extra, labels = {}, {}
    if files:
        configure_mlflow(p.mlflow, layout.root)
        plog = prediction_log(p, layout.root)
        engines = {}
        for alias in ("champion", "challenger"):
            try:
                engines[alias] = InferenceEngine.from_registry(  # the shadow: one thread, lowest priority
                    p.mlflow.registered_model, alias, prediction_log=plog, threads=1 if alias == "challenger" else None
                )
            except Exception as exc:  # no such alias, no ONNX export
                _fail(f"cannot load {p.mlflow.registered_model}@{alias}: {exc}")
        records, problems = _parse_files(files, p)
        for problem in problems:
            typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
        if not records:
            _fail("no wafer could be read")
        with ShadowEngine(engines["champion"], engines["challenger"], max_pending=len(records)) as engine:
            for start in range(0, len(records), 64):
                engine.predict(records[start : start + 64])
        labels = {(r.lot_id, r.wafer_id): r.label for r in records if r.label}
        extra = {"shadow_failed_batches": engine.failed}
    shadow_stage = stage("shadow")
    try:
        report = shadow_stage.module().report(p, layout, out.resolve(), labels=labels, extra=extra)
    except ValueError as exc:
        _fail(str(exc))
    for line in shadow_stage.summarise({"ran": True, "report": report, "path": str(out), "gate": None}):
        typer.echo(line)


@app.command()
def predict(
    files: list[Path] = typer.Argument(
        ..., help="Wafer maps in any ingestible format (LSWMD.pkl, npz, CSV, PNG, Parquet)."
    ),
    out: Path = typer.Option(Path("predictions"), help="Folder for predictions.jsonl, predictions.csv and overlays/."),
    model: Optional[Path] = typer.Option(None, help="An exported model.onnx (default: the registry alias)."),
    alias: str = typer.Option("champion", help="Registry alias to serve when --model is not given."),
    int8: bool = typer.Option(False, help="Serve the INT8 model (when the export kept one)."),
    overlay: bool = typer.Option(False, help="Also write a PNG per wafer: die map with the predicted mask."),
    explain: bool = typer.Option(
        False,
        help="Also write explanations/<wafer>.png: map | predicted mask | where the class head looked "
        "(a registry model: its torch weights are needed).",
    ),
    method: str = typer.Option("gradcam", help="Class-activation map for --explain: gradcam or gradcam++."),
    prediction_log: Optional[str] = typer.Option(
        None,
        help="Append every prediction to this log (folder or "
        "s3:// URI; default drift.prediction_log in params.yaml; "
        "'off' to skip).",
    ),
    params: Path = PARAMS,
) -> None:
    """Classify wafer maps and report their defects (class, confidence, mask, clusters, severity)."""
    from tqdm.auto import tqdm

    from waferflow.inference.engine import InferenceEngine
    from waferflow.inference.report import write_predictions
    from waferflow.monitoring.windows import prediction_log as project_log
    from waferflow.inference.prediction_log import PredictionLog

    p = load_params(params)
    if explain and model is not None:
        _fail("--explain needs a registry model (its torch weights): leave out --model, or pick --alias")
    if method not in ("gradcam", "gradcam++"):
        _fail(f"--method {method!r}: gradcam or gradcam++")
    plog = None if prediction_log == "off" else PredictionLog(prediction_log) if prediction_log else project_log(p)
    try:
        if model is not None:
            engine = InferenceEngine.from_path(
                model.with_name("model.int8.onnx") if int8 else model, prediction_log=plog
            )
        else:
            from waferflow.registry.tracking import configure_mlflow

            configure_mlflow(p.mlflow)
            engine = InferenceEngine.from_registry(p.mlflow.registered_model, alias, int8=int8, prediction_log=plog)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # the registry has no such alias, or cannot be reached
        _fail(f"cannot load {p.mlflow.registered_model}@{alias}: {exc}")
    records, problems = _parse_files(files, p)
    results = []
    for start in tqdm(range(0, len(records), 256), desc="predict", unit="batch", disable=len(records) <= 256):
        try:
            results.extend(engine.predict(records[start : start + 256]))
        except ValueError:  # one bad wafer in the batch: predict one by one, report the bad ones
            for rec in records[start : start + 256]:
                try:
                    results.extend(engine.predict(rec))
                except ValueError as one:
                    problems.append(str(one))
    for problem in problems:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    if not results:
        _fail("no wafer could be predicted")
    paths = write_predictions(
        results, records_by_key={(r.lot_id, r.wafer_id): r for r in records}, out_dir=out, overlays=overlay
    )
    typer.echo(
        f"{len(results)} wafers predicted with model version {engine.model_version or engine.path}; "
        f"wrote {', '.join(str(p) for p in paths)}"
    )
    decisions = Counter((r.get("triage") or {}).get("decision") for r in results)
    if None not in decisions:
        typer.echo(
            "triage: "
            + ", ".join(f"{d} {decisions.get(d, 0)}" for d in ("PASS", "REVIEW", "REJECT"))
            + " (REVIEW and REJECT: see triage_reason in the CSV)"
        )
    else:
        typer.echo("triage: none (this model version was exported without a novelty head)")
    if explain:
        folder, predictor = _write_explanations(results, records, engine, p.mlflow.registered_model, out, method)
        typer.echo(f"explanations ({method}) of {len(results)} wafers in {folder}")
        _explain_similar(records, engine, predictor, p, out)
    if plog is not None:
        typer.echo(
            f"prediction log {plog.root}: {plog.written} wafers logged"
            + (f", {plog.errors} batches could not be written (see the warnings)" if plog.errors else "")
        )


def _write_explanations(results: list[dict], records: list, engine, model_name: str, out: Path, method: str):
    """``out/explanations/<wafer>.png`` per result, from the torch weights of the served version
    (and its novelty head); returns the folder and those weights."""
    from tqdm.auto import tqdm

    from waferflow.fileio import atomic_path
    from waferflow.inference.report import explanation_pngs
    from waferflow.registry.pyfunc import load_initial_weights
    from waferflow.triage.novelty import HEAD_FILE, load_head
    from waferflow.viz.names import wafer_file_name

    predictor, _ = load_initial_weights(f"models:/{model_name}/{engine.model_version}")
    head = load_head(engine.path.with_name(HEAD_FILE))
    by_key = {(r.lot_id, r.wafer_id): r for r in records}
    folder = out / "explanations"
    folder.mkdir(parents=True, exist_ok=True)
    for start in tqdm(range(0, len(results), 64), desc="explain", unit="batch", disable=len(results) <= 64):
        chunk = results[start : start + 64]
        grids = [by_key[(r["lot_id"], r["wafer_id"])].die_grid for r in chunk]
        for r, png in zip(chunk, explanation_pngs(predictor, chunk, grids, engine.input_size, method, head)):
            with atomic_path(folder / wafer_file_name(r["lot_id"], r["wafer_id"])) as tmp:
                tmp.write_bytes(png)
    return folder, predictor


def _explain_similar(records: list, engine, predictor, p, out: Path, k: int = 10) -> None:
    """``predict --explain``'s similar past wafers: ``out/similar/`` from the project's index when
    the served version built it; otherwise it says why there are none."""
    from waferflow.explain.similar import past_index

    try:
        found, _ = past_index(PROJECT.root)
    except FileNotFoundError as exc:
        typer.echo(f"similar wafers: none ({exc})")
        return
    if str(found.info.get("model_version")) != str(engine.model_version):
        typer.echo(
            f"similar wafers: none (the index was built by model version {found.info.get('model_version')}, "
            f"the served one is {engine.model_version}: run `dvc repro index` with it, or `waferflow similar`)"
        )
        return
    answers = _similar_answers(found, predictor, records, p, k, out / "similar")
    typer.echo(f"similar wafers: the {k} nearest past wafers of {len(answers)} wafers in {out / 'similar'}")


def _similar_answers(found, predictor, records: list, p, k: int, out: Path) -> list[dict]:
    """Each record's ``k`` nearest past wafers in ``found`` with a gallery PNG, and ``similar.json``."""
    from waferflow.explain.similar import neighbour_grids
    from waferflow.fileio import write_json
    from waferflow.viz.names import wafer_file_name
    from waferflow.viz.wafer_plots import save_wafer_grid

    neighbours = found.past_wafers_of(predictor, records, tuple(p.preprocess.image_size), k=k)
    splits = neighbour_grids(PROJECT.root, found)
    answers = []
    for rec, near in zip(records, neighbours):
        gallery = out / "galleries" / wafer_file_name(rec.lot_id, rec.wafer_id)
        panels = [(rec.die_grid, None, f"query {rec.lot_id}/{rec.wafer_id}")] + [
            (
                splits[n["split"]][n["row"]],
                None,
                f"{_neighbour_label(n)} d={n['distance']:.3f}\n{n['lot_id']}/{n['wafer_id']}",
            )
            for n in near
        ]
        save_wafer_grid([panels], gallery, f"{rec.lot_id}/{rec.wafer_id}: the {k} nearest past wafers")
        answers.append({"lot_id": rec.lot_id, "wafer_id": rec.wafer_id, "neighbours": near, "gallery": str(gallery)})
    write_json(out / "similar.json", {"model_version": found.info.get("model_version"), "k": k, "wafers": answers})
    return answers


def _neighbour_label(n: dict) -> str:
    """A past wafer's label; an unlabeled production wafer shows the class the model gave it."""
    return n["label"] if n.get("label") else f"({n.get('predicted_class')}?)"


@app.command()
def similar(
    files: list[Path] = typer.Argument(..., help="Wafer maps in any ingestible format."),
    k: int = typer.Option(10, "-k", min=1, max=100, help="Nearest past wafers per map."),
    out: Path = typer.Option(Path("similar"), help="Folder for similar.json and a gallery PNG per wafer."),
    params: Path = PARAMS,
) -> None:
    """The past wafers most like each map (lot, wafer, label, distance), with a gallery: the labeled
    wafers `dvc repro index` embedded and the production wafers `waferflow index_log` added."""
    from waferflow.explain.similar import LABELED_INDEX, past_index
    from waferflow.registry.pyfunc import load_weights

    p = load_params(params)
    index = PROJECT.root / LABELED_INDEX
    try:
        found, which = past_index(PROJECT.root)
        trained = PROJECT.train_run()
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if str(trained["version"]) != str(found.info.get("model_version")):
        _fail(
            f"{index} was built by model version {found.info.get('model_version')}, models/ holds version "
            f"{trained['version']}: run `dvc repro index`"
        )
    records, problems = _parse_files(files, p)
    for problem in problems:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    if not records:
        _fail("no wafer could be read")
    predictor = load_weights(PROJECT / found.info["weights"])
    answers = _similar_answers(found, predictor, records, p, k, out)
    for a in answers:
        typer.echo(
            f"{a['lot_id']}/{a['wafer_id']}: "
            + ", ".join(
                f"{_neighbour_label(n)} ({n['lot_id']}/{n['wafer_id']}, {n['distance']:.3f})"
                for n in a["neighbours"][:5]
            )
        )
    typer.echo(f"{len(answers)} wafers against {which}; neighbours and galleries in {out}")


@app.command()
def promote(
    version: str = typer.Argument(..., help="Model version to make champion."),
    reason: str = typer.Option("", help="Why; recorded on the version."),
    params: Path = PARAMS,
) -> None:
    """Manual override: make VERSION the champion (the old one becomes 'previous'), recorded as such."""
    from waferflow.registry.gate import promote as promote_version
    from waferflow.registry.tracking import configure_mlflow

    p = load_params(params)
    configure_mlflow(p.mlflow)
    try:
        moved = promote_version(p.mlflow.registered_model, version, reason)
    except Exception as exc:  # unknown version: MLflow's own error type
        _fail(f"cannot promote {p.mlflow.registered_model} version {version}: {exc}")
    typer.echo(f"{p.mlflow.registered_model}: champion = version {moved['champion']}, previous = {moved['previous']}")


@app.command()
def rollback(params: Path = PARAMS) -> None:
    """Make the 'previous' version champion again (undo the last promotion)."""
    from waferflow.registry.gate import rollback as rollback_model
    from waferflow.registry.tracking import configure_mlflow

    p = load_params(params)
    configure_mlflow(p.mlflow)
    try:
        moved = rollback_model(p.mlflow.registered_model)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(
        f"{p.mlflow.registered_model}: champion = version {moved['champion']} (version {moved['demoted']} demoted)"
    )


@app.command("augment-ablation")
def augment_ablation(
    keep: int = typer.Option(30, help="Training maps left for each rare class (Near-full, Donut, Random, Scratch)."),
    epochs: int = typer.Option(15, help="Max epochs of both fits (early stopping as in params.yaml)."),
    out: Path = typer.Option(PROJECT.metrics / "augment_ablation.json", help="Result JSON."),
    params: Path = PARAMS,
) -> None:
    """Ablation: train with and without GAN maps on a starved split (same seed, same test split)."""
    from waferflow.fileio import write_json
    from waferflow.gan.ablation import ablation_table, run_ablation

    result = run_ablation(load_params(params), keep=keep, epochs=epochs)
    write_json(out, result, sort_keys=False, default=str)
    gan = result["gan"]
    typer.echo(
        f"GAN: {gan['kept_total']} synthetic maps kept in {gan['seconds']} s: "
        + ", ".join(f"{c} {v['kept']}/{v['generated']}" for c, v in gan["classes"].items())
    )
    typer.echo(ablation_table(result))
    typer.echo(
        f"delta macro-F1 (with - without) {result['delta_macro_f1']:+.4f}; written {out} in {result['seconds']} s"
    )


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Address to listen on (default serve.host: 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default serve.port: 8000)."),
    params: Path = PARAMS,
) -> None:
    """Serve the registry's champion over HTTP (the challenger in its shadow); docs at /docs."""
    import uvicorn

    from waferflow.serve.app import ServeConfigError, create_app

    p = load_params(params)
    host, port = host or p.serve.host, port or p.serve.port
    try:
        application = create_app(params, host=host)
    except ServeConfigError as exc:
        _fail(str(exc))
    typer.echo(f"serving {p.mlflow.registered_model}@champion on http://{host}:{port} (pages: /, API docs: /docs)")
    uvicorn.run(application, host=host, port=port, log_level="info")


@app.command()
def info(path: Path = typer.Argument(..., help="A canonical Parquet table.")) -> None:
    """Summarise a canonical table: wafers, classes, grid shapes, sources."""
    from waferflow.data.records import read_frame

    if not path.is_file():
        _fail(f"{path} does not exist")
    frame = read_frame(path)
    typer.echo(f"{path}: {len(frame)} wafers, {frame['lot_id'].nunique()} lots")
    typer.echo("classes: " + json.dumps(dict(Counter(frame["label"].fillna("unlabeled")))))
    shapes = Counter(zip(frame["height"], frame["width"]))
    typer.echo(
        f"grid shapes: {len(shapes)} distinct; most common: "
        + ", ".join(f"{h}x{w} ({n})" for (h, w), n in shapes.most_common(5))
    )
    typer.echo("sources: " + json.dumps(dict(Counter(frame["source"]))))


@app.command()
def gallery(
    path: Path = typer.Argument(..., help="A canonical Parquet table."),
    out: Path = typer.Option(Path("gallery.png"), help="PNG to write."),
    per_class: int = typer.Option(6, help="Wafers per class."),
) -> None:
    """Draw a PNG gallery of a table's wafer maps, a row per class, masks outlined."""
    from waferflow.data.records import read_records
    from waferflow.viz import save_gallery

    if not path.is_file():
        _fail(f"{path} does not exist")
    typer.echo(f"wrote {save_gallery(read_records(path), out, per_class=per_class, title=str(path))}")


@remote_app.command("s3")
def remote_s3(
    url: Optional[str] = typer.Argument(
        None, help="s3://bucket/prefix; default: env WAFERFLOW_DVC_S3_URL, then storage.dvc_s3_url in params."
    ),
    endpoint_url: Optional[str] = typer.Option(None, help="S3-compatible endpoint (MinIO ...)."),
    check: bool = typer.Option(True, help="Check with boto3 that the bucket is reachable first."),
    params: Path = PARAMS,
) -> None:
    """Make an S3 bucket the default DVC remote (written to .dvc/config.local, never committed)."""
    from waferflow.storage import S3Location, check_bucket

    p = load_params(params)
    url = url or os.environ.get("WAFERFLOW_DVC_S3_URL") or p.storage.dvc_s3_url
    endpoint_url = endpoint_url or p.storage.s3_endpoint_url or None
    if not url:
        _fail("no S3 URL: pass one, set WAFERFLOW_DVC_S3_URL, or set storage.dvc_s3_url in params.yaml")
    try:
        loc = S3Location.parse(url)
        if check:
            check_bucket(loc, endpoint_url)
    except ValueError as exc:
        _fail(str(exc))
    cmds = [[sys.executable, "-m", "dvc", "remote", "add", "--local", "--default", "--force", "s3", url]]
    if endpoint_url:
        cmds.append([sys.executable, "-m", "dvc", "remote", "modify", "--local", "s3", "endpointurl", endpoint_url])
    for cmd in cmds:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            _fail(f"{' '.join(cmd[2:])} failed: {done.stderr.strip()}")
    typer.echo(f"DVC default remote is now {url} (in .dvc/config.local); `dvc push` uploads, `dvc pull` fetches.")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
