"""The service's pages and the API behind them: predict, the review queue, the models.

Pages are static HTML and JavaScript (``serve/static``, no Node toolchain) served under ``/ui``;
everything they show comes from the versioned JSON API, so a page can do nothing a client of the
API cannot:

* **Predict** (``/ui/predict.html``) posts map files to ``/v1/predict?images=true`` and draws a
  card per wafer; CSV (the columns of ``waferflow predict``) and JSON downloads.
* **Review** (``/ui/review.html``) — the active-learning queue: ``GET /v1/review/queue`` (the
  queue's wafers, their images with the model's guess, what is labeled), ``POST /v1/review/labels``
  (one answer). Each answer is written as a one-row CSV under ``<al.labels_dir>/web/`` (kept:
  the label's provenance) and imported by :func:`waferflow.active.labels.import_labels`, so it
  meets exactly the checks of ``waferflow label import``: an unknown wafer or class, or a label
  that contradicts a stored one, is refused with the reason and quarantined; nothing is overwritten.
* **Models** (``/ui/models.html``) — ``GET /v1/registry``: champion, challenger and previous with
  their gate decisions, rules and metrics (real maps and the generated split), the shadow's
  agreement, links into the MLflow UI. ``POST /v1/registry/promote`` and ``/v1/registry/rollback``
  need an API key even on loopback: with no key configured they are refused.
"""

from __future__ import annotations

import csv
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from waferflow.classes import CLASSES
from waferflow.config import Params
from waferflow.layout import Layout
from waferflow.serve.models import ServedModels

__all__ = ["add_pages", "STATIC_DIR", "mlflow_ui_url"]

STATIC_DIR = Path(__file__).parent / "static"
#: ``make mlflow-ui``'s address: where the links point when the registry is the project's own store.
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
#: Version tags shown on the models page (written by the train, evaluate, export and gate stages).
METRIC_TAGS = ("real_test_macro_f1", "real_test_min_recall", "real_dev_macro_f1", "test_macro_f1", "test_accuracy")
# The pages load only their own scripts; images are data: URLs (predict cards) or blobs (review
# images, fetched with the API key).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


class LabelIn(BaseModel):
    wafer_id: str = Field(description="the queue's wafer id, LOT:WAFER")
    label: str = Field(description="one of the nine classes")
    annotator: str = Field(description="who answered")


class PromoteIn(BaseModel):
    version: str
    reason: str = ""


def mlflow_ui_url(tracking_uri: str) -> str:
    """The MLflow UI of a tracking server, or ``make mlflow-ui``'s for a local store."""
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else LOCAL_MLFLOW_UI


class _StaticPages(StaticFiles):
    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def _review_queue(p: Params, root: Path) -> dict:
    import pandas as pd

    from waferflow.active.labels import queue_key, read_store

    path = Layout(root).al_queue / "queue.parquet"
    if not path.is_file():
        raise HTTPException(404, f"no annotation queue at {path}: run `dvc repro al_query` first")
    queue = pd.read_parquet(path)
    store = read_store(Layout(root).resolve(p.al.labels_dir))
    stored = {
        queue_key(lot, w): {"label": lab, "annotator": who, "round": int(rnd)}
        for lot, w, lab, who, rnd in zip(
            store["lot_id"], store["wafer_id"], store["label"], store["annotator"], store["round"]
        )
    }
    wafers = [
        {
            "rank": int(row["query_rank"]),
            "wafer_id": row["wafer_id"],
            "lot_id": row["lot_id"],
            "predicted": row["predicted"],
            "confidence": round(float(row["confidence"]), 4),
            "top3": row["top3"],
            "image": f"/v1/review/images/{int(row['query_rank'])}",
            "stored": stored.get(row["wafer_id"]),
        }
        for row in queue.to_dict("records")
    ]
    return {
        "round": int(queue["round"].iloc[0]) if len(queue) else None,
        "strategy": str(queue["strategy"].iloc[0]) if len(queue) else None,
        "classes": list(CLASSES),
        "labeled": sum(w["stored"] is not None for w in wafers),
        "total": len(wafers),
        "wafers": wafers,
    }


def _queue_image(root: Path, rank: int) -> Path:
    """The image the query stage drew for the queue's wafer of ``rank`` (looked up, never a client's path)."""
    import pandas as pd

    queue_dir = Layout(root).al_queue
    queue = pd.read_parquet(queue_dir / "queue.parquet", columns=["query_rank", "image"])
    names = queue.loc[queue["query_rank"] == rank, "image"].tolist()
    path = (queue_dir / names[0]).resolve() if names else None
    if path is None or not path.is_file() or not path.is_relative_to(queue_dir.resolve()):
        raise HTTPException(404, f"no image for queue rank {rank}")
    return path


def _import_answer(p: Params, root: Path, answer: LabelIn) -> dict:
    """One answer through ``waferflow label import``'s checks (see the module doc)."""
    from waferflow.active.labels import import_labels

    layout = Layout(root)
    labels_dir = layout.resolve(p.al.labels_dir)
    when = datetime.now(timezone.utc)
    inbox = labels_dir / "web"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / f"{when:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}.csv"
    with path.open("x", newline="", encoding="utf-8") as fh:  # a new file, never another's
        writer = csv.writer(fh)
        writer.writerow(["wafer_id", "label", "annotator"])
        writer.writerow([answer.wafer_id, answer.label, answer.annotator])
    report = import_labels(path, layout.al_queue / "queue.parquet", labels_dir, layout.quarantine / "labels", now=when)
    return {
        "wafer_id": answer.wafer_id,
        "stored": report.accepted == 1,
        "unchanged": report.unchanged == 1,
        "rejected": [{"field": r.field, "reason": r.reason} for r in report.rejects],
        "quarantine": report.quarantine,
        "file": str(path),
    }


def _registry(p: Params, root: Path, models: ServedModels) -> dict:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from waferflow.registry.aliases import PREVIOUS
    from waferflow.registry.register import CHALLENGER, CHAMPION
    from waferflow.registry.tracking import configure_mlflow, resolved_tracking_uri

    configure_mlflow(p.mlflow, root)
    client, name = MlflowClient(), p.mlflow.registered_model
    ui = mlflow_ui_url(resolved_tracking_uri(p.mlflow, root))
    try:
        aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        raise HTTPException(404, f"registered model {name}: {exc.message}") from None
    served = models.current
    served_as = {} if served is None else {served.champion_version: CHAMPION, served.challenger_version: CHALLENGER}
    roles = []
    for alias in (CHAMPION, CHALLENGER, PREVIOUS):
        version = aliases.get(alias)
        if version is None:
            roles.append({"alias": alias, "version": None})
            continue
        mv = client.get_model_version(name, version)
        tags = mv.tags
        experiment = client.get_run(mv.run_id).info.experiment_id if mv.run_id else None
        roles.append(
            {
                "alias": alias,
                "version": version,
                "served_as": served_as.get(version),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "metrics": {k: float(tags[k]) for k in METRIC_TAGS if k in tags},
                "gate": {
                    "decision": tags.get("gate.decision"),
                    "reason": tags.get("gate.reason"),
                    "decided_at": tags.get("gate.decided_at"),
                    "rules": {k.removeprefix("gate.rule."): v for k, v in tags.items() if k.startswith("gate.rule.")},
                },
                "mlflow": {
                    "version": f"{ui}/#/models/{name}/versions/{version}",
                    "run": f"{ui}/#/experiments/{experiment}/runs/{mv.run_id}" if experiment else None,
                },
            }
        )
    counts = models.shadow_counts()
    return {
        "model": name,
        "mlflow_ui": f"{ui}/#/models/{name}",
        "roles": roles,
        "shadow": {
            **counts,
            "agreement": round(counts["agreed"] / counts["compared"], 4) if counts["compared"] else None,
        },
        "last_error": models.last_error,
    }


def add_pages(
    app: FastAPI,
    p: Params,
    root: Path,
    models: ServedModels,
    keys: set[str],
    require_key: Callable,
    header: str,
) -> None:
    """Mount the pages on ``app`` with the review and registry API they use."""

    def require_admin(request: Request) -> None:
        if not keys:
            raise HTTPException(
                403,
                f"promotion and rollback from the service need an API key: set {p.serve.api_key_env} "
                "(or serve.api_key_file) and restart, or use `waferflow promote` / `rollback`",
            )
        from waferflow.serve.app import key_matches

        if not key_matches(request.headers.get(header, ""), keys):
            raise HTTPException(401, f"missing or wrong {header} header")

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/ui/predict.html")

    app.mount("/ui", _StaticPages(directory=STATIC_DIR, html=True), name="ui")

    @app.get("/v1/review/queue", tags=["review"], dependencies=[Depends(require_key)])
    def review_queue() -> dict:
        """The active-learning queue: each wafer's image, the model's guess, its stored label if any."""
        return _review_queue(p, root)

    @app.get("/v1/review/images/{rank}", tags=["review"], dependencies=[Depends(require_key)])
    def review_image(rank: int):
        """The queue image (wafer, predicted mask, top-3) of the wafer ranked ``rank``."""
        return FileResponse(_queue_image(root, rank), media_type="image/png")

    @app.post("/v1/review/labels", tags=["review"], dependencies=[Depends(require_key)])
    async def review_label(answer: LabelIn):
        """One annotator answer, checked and stored as ``waferflow label import`` does; a refused
        answer is a 422 with the reason (nothing stored, nothing overwritten)."""
        if not answer.annotator.strip():
            raise HTTPException(422, "annotator: give your name; every stored label says who gave it")
        try:
            result = await run_in_threadpool(_import_answer, p, root, answer)
        except FileNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        if result["rejected"]:
            raise HTTPException(422, {"message": result["rejected"][0]["reason"], **result})
        return result

    @app.get("/v1/registry", tags=["models"], dependencies=[Depends(require_key)])
    def registry() -> dict:
        """Champion, challenger and previous: gate decisions, metrics, MLflow links, shadow agreement."""
        return _registry(p, root, models)

    @app.post("/v1/registry/promote", tags=["models"], dependencies=[Depends(require_admin)])
    async def promote_version(body: PromoteIn) -> dict:
        """Make ``version`` the champion (a manual override, recorded on the version); served at once."""
        from mlflow.exceptions import MlflowException

        from waferflow.registry.gate import promote

        try:
            moved = await run_in_threadpool(
                promote, p.mlflow.registered_model, body.version, body.reason or "promoted from the models page"
            )
        except MlflowException as exc:
            raise HTTPException(404, f"version {body.version}: {exc.message}") from None
        await run_in_threadpool(models.refresh)
        return {**moved, "served": models.current and models.current.champion_version}

    @app.post("/v1/registry/rollback", tags=["models"], dependencies=[Depends(require_admin)])
    async def rollback_champion() -> dict:
        """Champion <- previous; served at once."""
        from waferflow.registry.gate import rollback

        try:
            moved = await run_in_threadpool(rollback, p.mlflow.registered_model)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        await run_in_threadpool(models.refresh)
        return {**moved, "served": models.current and models.current.champion_version}
