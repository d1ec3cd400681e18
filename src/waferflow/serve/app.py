"""``waferflow serve``: the registry's champion over HTTP, the challenger in its shadow.

FastAPI app (OpenAPI docs at ``/docs``), run by uvicorn. Endpoints:

* ``POST /v1/predict`` — one wafer (``{"die_grid": [[...]], "lot_id": ..., "wafer_id": ...}``),
  a batch (``{"wafers": [...]}``), or map files uploaded as ``multipart/form-data`` in any format
  ingest reads; per wafer the engine's result (class, calibrated confidence, top-k, defect mask,
  clusters, severity; ``?mask=false`` leaves the mask out); ``?overlay=png`` answers one wafer's
  picture instead. A wafer that cannot be classified is a 422 naming it and the reason; too many
  wafers or too large a body a 413; nothing a client sends takes the worker down.
* ``GET /v1/models`` — the versions served, when they were loaded, the shadow's counts.
* ``GET /healthz`` (process up), ``GET /readyz`` (a model loaded and its probe prediction passed).
* ``GET /metrics`` — Prometheus: request latency histogram (prometheus-fastapi-instrumentator),
  wafers by predicted class, errors by reason, served model versions, shadow batches and wafers.
* Pages for people (``/`` → ``/ui/predict.html``, review queue, models) and the review and
  registry API behind them: :mod:`waferflow.serve.pages`.

Every prediction goes to the prediction log (``drift.prediction_log``), the challenger's too,
without ever failing a request; the service gathers log rows and writes them as one part every
``serve.log_flush_seconds`` (:class:`~waferflow.inference.prediction_log.BufferedPredictionLog`).
The registry is the project's own MLflow store unless ``MLFLOW_TRACKING_URI`` names a server;
the aliases are polled (``serve.poll_seconds``) and a promotion is picked up without a failed
request (:mod:`waferflow.serve.models`).

Security: on any address but loopback an API key is required (``X-API-Key`` header; keys from the
``serve.api_key_env`` variable and/or ``serve.api_key_file``) and the service refuses to start
without one; CORS is off unless ``serve.cors_origins`` lists origins.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import os
import re
import tempfile
import uuid
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from waferflow.config import Params, ServeParams, load_params
from waferflow.data.parsers.base import side_problem
from waferflow.data.records import WaferRecord
from waferflow.layout import Layout
from waferflow.serve.models import CHALLENGER, CHAMPION, ServedModels
from waferflow.serve.pages import add_pages

__all__ = [
    "create_app",
    "running",
    "registry_models",
    "ServeConfigError",
    "api_keys",
    "is_loopback",
    "key_matches",
]

log = logging.getLogger(__name__)
API_KEY_HEADER = "X-API-Key"


class ServeConfigError(RuntimeError):
    """The service must not start as configured (e.g. a public address without an API key)."""


class WaferIn(BaseModel):
    die_grid: list[list[float]] = Field(description="rows of die codes: 0 no die, 1 pass, 2 fail")
    lot_id: str | None = None
    wafer_id: str | None = None


class PredictIn(BaseModel):
    """One wafer (``die_grid`` …) or a batch (``wafers``)."""

    wafers: list[WaferIn] | None = None
    die_grid: list[list[float]] | None = None
    lot_id: str | None = None
    wafer_id: str | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_matches(given: str, keys: set[str]) -> bool:
    """``given`` is one of ``keys`` (compared in constant time)."""
    return any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)


def api_keys(cfg: ServeParams, root: Path) -> set[str]:
    """Keys from ``cfg.api_key_env`` (comma-separated) and ``cfg.api_key_file`` (one per line)."""
    keys = {k.strip() for k in os.environ.get(cfg.api_key_env, "").split(",")}
    if cfg.api_key_file:
        path = Path(cfg.api_key_file) if Path(cfg.api_key_file).is_absolute() else root / cfg.api_key_file
        if not path.is_file():
            raise ServeConfigError(f"serve.api_key_file {path} does not exist")
        keys |= {line.strip() for line in path.read_text().splitlines() if not line.startswith("#")}
    return {k for k in keys if k}


def registry_models(p: Params, root: Path) -> ServedModels:
    """Engines from the MLflow registry, logging every prediction under their alias."""
    from mlflow import MlflowClient

    from waferflow.inference.engine import InferenceEngine
    from waferflow.inference.prediction_log import BufferedPredictionLog
    from waferflow.monitoring.windows import prediction_log
    from waferflow.registry.tracking import configure_mlflow

    configure_mlflow(p.mlflow, root)
    plog = BufferedPredictionLog(prediction_log(p, root).root, flush_seconds=p.serve.log_flush_seconds)
    name = p.mlflow.registered_model

    def load(version: str, alias: str):  # the challenger on one thread: it only gets what the champion leaves
        engine = InferenceEngine.from_registry(
            name, version=version, prediction_log=plog, threads=1 if alias == CHALLENGER else None
        )
        engine.alias = alias  # loaded by version (the alias may move meanwhile), logged under its role
        return engine

    return ServedModels(
        name,
        load,
        lambda: MlflowClient().get_registered_model(name).aliases,
        shadow_max_pending=p.serve.shadow_max_pending,
        on_stop=plog.close,
    )


class _ServedCollector:
    """Prometheus metrics read from the served snapshot at scrape time."""

    def __init__(self, models: ServedModels) -> None:
        self.models = models

    def collect(self):
        version = GaugeMetricFamily("waferflow_served_model_version", "registry version served", labels=["alias"])
        served = self.models.current
        if served is not None:
            for alias, v in ((CHAMPION, served.champion_version), (CHALLENGER, served.challenger_version)):
                if v is not None and v.isdigit():
                    version.add_metric([alias], int(v))
        yield version
        counts = self.models.shadow_counts()
        batches = CounterMetricFamily("waferflow_shadow_batches", "challenger batches", labels=["outcome"])
        for outcome in ("shadowed", "dropped", "failed"):
            batches.add_metric([outcome], counts[outcome])
        yield batches
        wafers = CounterMetricFamily("waferflow_shadow_wafers", "wafers both models answered", labels=["outcome"])
        wafers.add_metric(["agreed"], counts["agreed"])
        wafers.add_metric(["disagreed"], counts["compared"] - counts["agreed"])
        yield wafers


def _grid(values, name: str) -> tuple[np.ndarray | None, str | None]:
    """A die grid from JSON rows, or the reason it is not one."""
    from waferflow.inference.engine import check_die_grid

    if not values or len({len(row) for row in values}) != 1:
        return None, f"{name}: ragged or empty rows (every row of a die grid has the same length)"
    if problem := side_problem(len(values), len(values[0])):
        return None, f"{name}: {problem}"
    try:
        return check_die_grid(np.asarray(values, dtype=np.float64), name), None
    except ValueError as exc:
        return None, str(exc)


def _safe_name(name: str | None, i: int) -> str:
    """An uploaded file's base name, reduced to safe characters (its suffix picks the parser)."""
    base = Path(name or f"upload-{i}").name
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[-120:] or f"upload-{i}"


def _parse_uploads(files: list[tuple[str, bytes]], p: Params) -> tuple[list[WaferRecord], list[dict]]:
    """Records of every uploaded file ingest can read, and a reject per file or row it cannot."""
    from waferflow.data.parsers import FileRejected, parse_file

    records, rejects = [], []
    with tempfile.TemporaryDirectory(prefix="waferflow-upload-") as tmp:
        for i, (name, content) in enumerate(files):
            path = Path(tmp) / f"{i}" / _safe_name(name, i)
            path.parent.mkdir()
            path.write_bytes(content)
            try:
                result = parse_file(path, p.ingest.parser_options())
            except FileRejected as exc:
                rejects.append({"file": name, "row": None, "field": exc.field, "reason": exc.reason})
                continue
            for rec in result.records:
                rec.source_ref = f"{name}#{(rec.source_ref or '').rsplit('#', 1)[-1]}"
            records.extend(result.records)
            rejects += [{"file": name, "row": r.row, "field": r.field, "reason": r.reason} for r in result.rejects]
    return records, rejects


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", timeout: float = 120) -> Iterator[str]:
    """``app`` under uvicorn in a background thread on a free port of ``host``; yields its base URL
    once it accepts connections, and stops it on exit (tests and ``benchmarks/serve.py``)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="waferflow-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the service did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def create_app(
    params_path: str | Path = "params.yaml",
    host: str | None = None,
    models: ServedModels | None = None,
    poll: bool = True,
) -> FastAPI:
    """The service for the project of ``params_path``. ``models`` replaces the registry's (tests);
    ``poll=False`` refreshes once at startup and then only when :meth:`ServedModels.refresh` is called."""
    params_path = Path(params_path).resolve()
    p, root = load_params(params_path), params_path.parent
    cfg = p.serve
    keys = api_keys(cfg, root)
    host = host or cfg.host
    if not is_loopback(host) and not keys:
        raise ServeConfigError(
            f"refusing to listen on {host} without an API key: set {cfg.api_key_env} (comma-separated keys) "
            "or serve.api_key_file, or listen on 127.0.0.1"
        )
    models = models or registry_models(p, root)
    max_bytes = int(cfg.max_request_mb * 1024 * 1024)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if poll:
            await run_in_threadpool(models.start, cfg.poll_seconds)
        else:
            await run_in_threadpool(models.refresh)
        yield
        models.stop()

    app = FastAPI(
        title="waferflow",
        version="1",
        description="Wafer map defect pattern recognition: the registry's champion, the challenger in its shadow.",
        lifespan=lifespan,
    )
    app.state.models, app.state.params = models, p
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"])

    registry = CollectorRegistry()
    registry.register(_ServedCollector(models))
    predicted = Counter("waferflow_wafers_predicted", "wafers answered, by class", ["cls"], registry=registry)
    errors = Counter(
        "waferflow_prediction_errors", "requests refused or failed, by reason", ["reason"], registry=registry
    )

    def require_key(request: Request) -> None:
        if not keys:
            return
        if not key_matches(request.headers.get(API_KEY_HEADER, ""), keys):
            errors.labels("unauthorised").inc()
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header")

    def refuse(status: int, reason: str, detail) -> HTTPException:
        errors.labels(reason).inc()
        return HTTPException(status, detail)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise refuse(
                413, "too_large", f"request body of {declared} bytes; at most {max_bytes} (serve.max_request_mb)"
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise refuse(413, "too_large", f"request body over {max_bytes} bytes (serve.max_request_mb)")
        return bytes(body)

    async def wafers_of(request: Request, body: bytes) -> tuple[list[WaferRecord], list[dict]]:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):

            async def replay():
                return {"type": "http.request", "body": body, "more_body": False}

            form = await Request(request.scope, replay).form(max_files=cfg.max_wafers, max_fields=16)
            files = [(v.filename, await v.read()) for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                raise refuse(422, "bad_request", "a multipart request needs at least one file part")
            records, rejects = await run_in_threadpool(_parse_uploads, files, p)
            if not records:
                raise refuse(422, "unreadable_file", {"message": "no wafer could be read", "rejected": rejects})
            return records, rejects
        try:
            payload = PredictIn.model_validate(json.loads(body or b"null"))
        except (ValueError, ValidationError) as exc:
            raise refuse(422, "bad_request", f"not a predict request (JSON with die_grid or wafers): {exc}") from None
        items = payload.wafers if payload.wafers is not None else [payload] if payload.die_grid is not None else []
        if not items:
            raise refuse(422, "bad_request", "no wafer: send die_grid, wafers, or map files")
        if len(items) > cfg.max_wafers:
            raise refuse(413, "too_many_wafers", f"{len(items)} wafers; at most {cfg.max_wafers} a request")
        batch, records, problems = uuid.uuid4().hex[:12], [], []
        for i, item in enumerate(items):
            lot, wafer = item.lot_id or "api", item.wafer_id or f"{batch}-{i}"
            grid, problem = _grid(item.die_grid, f"wafer {i} ({lot}/{wafer})")
            if problem:
                problems.append({"wafer": i, "lot_id": lot, "wafer_id": wafer, "reason": problem})
            else:
                records.append(WaferRecord(die_grid=grid, lot_id=lot, wafer_id=wafer, source="api"))
        if problems:
            raise refuse(
                422, "bad_wafer", {"message": f"{len(problems)} wafer(s) cannot be classified", "wafers": problems}
            )
        return records, []

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz():
        """A model is loaded and its probe prediction passed."""
        served = models.current
        if served is None:
            return JSONResponse({"ready": False, "reason": models.last_error or "no model loaded yet"}, 503)
        return {"ready": True, "champion": served.champion_version, "challenger": served.challenger_version}

    @app.get("/v1/models", tags=["models"], dependencies=[Depends(require_key)])
    def served_models() -> dict:
        """What is served: versions, when loaded, the shadow's counts, the registry's last refresh."""
        served = models.current
        counts = models.shadow_counts()
        return {
            "model": models.model_name,
            "champion": None if served is None else {"version": served.champion_version, "loaded_at": served.loaded_at},
            "challenger": None
            if served is None or served.challenger_version is None
            else {"version": served.challenger_version, "loaded_at": served.loaded_at},
            "shadow": {
                **counts,
                "agreement": round(counts["agreed"] / counts["compared"], 4) if counts["compared"] else None,
            },
            "swaps": models.swaps,
            "last_refresh": models.last_refresh,
            "last_error": models.last_error,
        }

    @app.post(
        "/v1/predict",
        tags=["predict"],
        dependencies=[Depends(require_key)],
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": PredictIn.model_json_schema()},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                        }
                    },
                },
                "required": True,
            }
        },
    )
    async def predict(
        request: Request,
        overlay: Literal["png"] | None = Query(None, description="png: the wafer's map with its defect mask"),
        top_k: int = Query(3, ge=1, le=9),
        mask: bool = Query(True, description="include each wafer's defect mask (die grid of pattern indexes)"),
        images: bool = Query(
            False, description="add each wafer's overlay as a PNG data URL, and the CSV of waferflow predict"
        ),
    ):
        """Classify wafers: JSON die grids or uploaded map files (any format ingest reads)."""
        from waferflow.inference.engine import to_json

        served = models.current
        if served is None:
            raise refuse(503, "no_model", f"no model loaded: {models.last_error or 'starting'}")
        records, rejects = await wafers_of(request, await read_body(request))
        if len(records) > cfg.max_wafers:
            raise refuse(413, "too_many_wafers", f"{len(records)} wafers; at most {cfg.max_wafers} a request")
        if overlay and len(records) != 1:
            raise refuse(422, "bad_request", f"overlay=png answers one wafer; the request holds {len(records)}")
        try:
            results = await run_in_threadpool(served.predict, records, top_k=top_k)
        except ValueError as exc:  # the engine's own check of a wafer
            raise refuse(422, "bad_wafer", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - reported, counted; the worker goes on
            log.exception("predict failed")
            raise refuse(500, "internal", f"prediction failed: {type(exc).__name__}: {exc}") from None
        for r in results:
            predicted.labels(r["class"]).inc()
        if overlay:
            from waferflow.inference.report import overlay_png

            png = await run_in_threadpool(overlay_png, results[0], records[0].die_grid)
            return Response(png, media_type="image/png")
        wafers = [to_json(r) if mask else {k: v for k, v in r.items() if k != "mask"} for r in results]
        answer = {
            "model_version": served.champion_version,
            "shadow_version": served.challenger_version,
            "wafers": wafers,
            "rejected": rejects,
        }
        if images:
            from waferflow.inference.report import csv_text, overlay_png

            def draw() -> list[str]:
                return [
                    "data:image/png;base64," + base64.b64encode(overlay_png(r, rec.die_grid)).decode()
                    for r, rec in zip(results, records)
                ]

            for wafer, png in zip(wafers, await run_in_threadpool(draw)):
                wafer["overlay_png"] = png
            answer["csv"] = csv_text(results)
        return answer

    index_cache: dict = {}

    def similar_index():
        """The index ``dvc repro index`` built (with the production wafers of ``index_log``), with
        the weights that embedded it; reloaded when either is rebuilt."""
        from waferflow.explain.similar import LABELED_INDEX, LOG_INDEX, past_index
        from waferflow.registry.pyfunc import load_weights

        stamp = tuple(
            (Layout(root) / f / "index.json").stat().st_mtime_ns
            if (Layout(root) / f / "index.json").is_file()
            else None
            for f in (LABELED_INDEX, LOG_INDEX)
        )
        if index_cache.get("stamp") != stamp or "index" not in index_cache:
            index, _ = past_index(root)
            index_cache.update(stamp=stamp, index=index, predictor=load_weights(root / index.info["weights"]))
        return index_cache["index"], index_cache["predictor"]

    @app.post("/v1/similar", tags=["predict"], dependencies=[Depends(require_key)])
    async def similar(request: Request, k: int = Query(10, ge=1, le=100)):
        """The past labeled wafers most like each wafer sent (same bodies as ``/v1/predict``): lot,
        wafer, label, split and cosine distance, from the index of ``dvc repro index``."""
        records, rejects = await wafers_of(request, await read_body(request))
        try:
            index, predictor = await run_in_threadpool(similar_index)
        except FileNotFoundError as exc:
            raise refuse(503, "no_index", str(exc)) from None
        found = await run_in_threadpool(index.past_wafers_of, predictor, records, tuple(p.preprocess.image_size), k)
        return {
            "index_model_version": index.info.get("model_version"),
            "wafers": [
                {"lot_id": r.lot_id, "wafer_id": r.wafer_id, "neighbours": near} for r, near in zip(records, found)
            ],
            "rejected": rejects,
        }

    explainer: dict = {}

    def served_weights(version: str, onnx_path: Path):
        """The torch weights of the served version (Grad-CAM needs gradients; ONNX has none) and
        the novelty head exported beside its ONNX (None for an export without one)."""
        if explainer.get("version") != version:
            from waferflow.registry.pyfunc import load_initial_weights
            from waferflow.registry.tracking import configure_mlflow
            from waferflow.triage.novelty import HEAD_FILE, load_head

            configure_mlflow(p.mlflow, root)
            predictor, _ = load_initial_weights(f"models:/{p.mlflow.registered_model}/{version}")
            explainer.update(version=version, predictor=predictor, head=load_head(onnx_path.with_name(HEAD_FILE)))
        return explainer["predictor"], explainer["head"]

    @app.post("/v1/explain", tags=["predict"], dependencies=[Depends(require_key)])
    async def explain(
        request: Request,
        method: Literal["gradcam", "gradcam++"] = Query("gradcam", description="class-activation map"),
        lot_id: str | None = Query(None, description="with wafer_id: explain this wafer of the files sent"),
        wafer_id: str | None = Query(None),
    ):
        """One wafer's picture: map | predicted mask | where the class head saw its class | where
        it is unlike known wafers (PNG). Send one wafer, or files and the ``lot_id``/``wafer_id``
        of the one to explain (the predict page's cards do)."""
        from waferflow.inference.report import explanation_pngs

        served = models.current
        if served is None:
            raise refuse(503, "no_model", f"no model loaded: {models.last_error or 'starting'}")
        records, _ = await wafers_of(request, await read_body(request))
        if lot_id is not None or wafer_id is not None:
            records = [r for r in records if (r.lot_id, r.wafer_id) == (lot_id, wafer_id)]
            if not records:
                raise refuse(422, "bad_request", f"no wafer {lot_id}/{wafer_id} in the request")
        if len(records) != 1:
            raise refuse(422, "bad_request", f"explain answers one wafer; the request holds {len(records)}")

        def draw() -> bytes:
            results = served.champion.predict(records)
            predictor, head = served_weights(served.champion_version, served.champion.path)
            return explanation_pngs(
                predictor, results, [records[0].die_grid], served.champion.input_size, method, head
            )[0]

        return Response(await run_in_threadpool(draw), media_type="image/png")

    add_pages(app, p, root, models, keys, require_key, API_KEY_HEADER)
    Instrumentator(registry=registry, excluded_handlers=["/metrics"]).instrument(app).expose(
        app, include_in_schema=True, dependencies=[Depends(require_key)]
    )
    return app
