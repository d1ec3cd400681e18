"""Write predictions for people and tools: JSON lines, a CSV summary, overlay PNGs.

Every file is written whole or not at all (:mod:`waferflow.fileio`): a run killed mid-write
leaves the previous file in place. Each overlay's path is recorded in its wafer's row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from waferflow.data.records import WaferRecord
from waferflow.fileio import atomic_path, save_figure
from waferflow.inference.engine import to_json
from waferflow.viz.names import wafer_file_name
from waferflow.viz.wafer_plots import plot_wafer

__all__ = ["write_predictions", "overlay_png", "explanation_png", "explanation_pngs", "csv_text", "CSV_COLUMNS"]

log = logging.getLogger(__name__)
CSV_COLUMNS = [
    "lot_id",
    "wafer_id",
    "class",
    "confidence",
    "triage",
    "triage_reason",
    "novelty",
    "second_class",
    "second_probability",
    "severity",
    "fail_density",
    "affected_dies",
    "clusters",
    "edge_ratio",
    "rows",
    "cols",
    "model_version",
]
OVERLAYS = "overlays"


def _overlay_figure(result: dict, grid: np.ndarray) -> Figure:
    """The wafer with its predicted mask, titled with lot/wafer, class, confidence and severity.
    A bare :class:`Figure` (no pyplot state): safe to draw from a server's worker threads."""
    fig = Figure(figsize=(3.2, 3.4))
    FigureCanvasAgg(fig)
    plot_wafer(
        fig.add_subplot(),
        grid,
        result["mask"],
        f"{result['lot_id']}/{result['wafer_id']}: "
        f"{result['class']} {result['confidence']:.2f}, severity {result['defects']['severity']}",
    )
    fig.tight_layout()
    return fig


def _heat_panel(fig: Figure, ax, grid: np.ndarray, heat: np.ndarray, title: str, cmap: str) -> None:
    ax.imshow(np.where(grid > 0, 1, 0), cmap="Greys", vmin=0, vmax=4, interpolation="nearest")
    shown = ax.imshow(np.ma.masked_where(grid == 0, heat), cmap=cmap, vmin=0, vmax=1, alpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)


def explanation_png(
    result: dict, grid: np.ndarray, cam: np.ndarray, method: str = "Grad-CAM", novelty: np.ndarray | None = None
) -> bytes:
    """The die map | the predicted defect mask on it | where the class head looked (``cam`` in
    [0, 1] on the die grid, :mod:`waferflow.explain.cam`) | with ``novelty``, where the wafer is
    unlike known wafers (:func:`waferflow.triage.novelty.novelty_heatmap`), titled with the triage."""
    panels = 3 if novelty is None else 4
    fig = Figure(figsize=(2.8 * panels, 3.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels)
    plot_wafer(axes[0], grid, None, f"{result['lot_id']}/{result['wafer_id']}")
    plot_wafer(axes[1], grid, result["mask"], f"{result['class']} {result['confidence']:.2f}: predicted mask")
    _heat_panel(fig, axes[2], grid, cam, f"{method}: where '{result['class']}' was seen", "inferno")
    if novelty is not None:
        triage = result.get("triage") or {}
        title = "novelty: unlike known wafers"
        if triage:
            title = f"{triage['decision']} (novelty {triage['novelty']:.2f}): unlike known wafers"
        _heat_panel(fig, axes[3], grid, novelty, title, "viridis")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def explanation_pngs(
    predictor,
    results: list[dict],
    grids: list[np.ndarray],
    input_size: tuple[int, int],
    method: str = "gradcam",
    novelty_head=None,
) -> list[bytes]:
    """:func:`explanation_png` of each prediction, its class explained by ``predictor`` (the torch
    weights of the version that made ``results``) with :func:`waferflow.explain.cam.class_activation_maps`,
    and the novelty heatmap of that version's ``novelty_head`` when it has one."""
    from waferflow.classes import CLASSES
    from waferflow.data.resize import resize_grid
    from waferflow.explain.cam import class_activation_maps, on_die_grid

    cams, _ = class_activation_maps(
        predictor, grids, input_size, method=method, classes=[CLASSES.index(r["class"]) for r in results]
    )
    novelty = [None] * len(grids)
    if novelty_head is not None:
        from waferflow.triage.novelty import novelty_heatmap

        heat = novelty_heatmap(predictor, novelty_head, np.stack([resize_grid(g, input_size) for g in grids]))
        novelty = [on_die_grid(h, g) for h, g in zip(heat, grids)]
    label = "Grad-CAM++" if method == "gradcam++" else "Grad-CAM"
    return [explanation_png(r, g, cam, label, nov) for r, g, cam, nov in zip(results, grids, cams, novelty)]


def overlay_png(result: dict, grid: np.ndarray) -> bytes:
    """One prediction's overlay (:func:`_overlay_figure`) as PNG bytes."""
    buffer = io.BytesIO()
    _overlay_figure(result, grid).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _draw_overlay(result: dict, record: WaferRecord, path: Path) -> bool:
    """Draw the wafer with its mask to ``path``; False (reported, not raised) when that failed."""
    try:
        save_figure(_overlay_figure(result, record.die_grid), path, dpi=110)
        return True
    except Exception as exc:  # noqa: BLE001 - one wafer's picture must not cost the others theirs
        log.warning(
            "overlay of wafer %s/%s not written to %s: %s: %s",
            result["lot_id"],
            result["wafer_id"],
            path,
            type(exc).__name__,
            exc,
        )
        return False


def _write_overlays(results: list[dict], records_by_key: dict[tuple, WaferRecord], out_dir: Path) -> list[str | None]:
    """Per wafer the path, relative to ``out_dir``, of its overlay under ``overlays/``, or None when
    it has no record or could not be drawn."""
    (out_dir / OVERLAYS).mkdir(exist_ok=True)
    written = []
    for r in results:
        rec = records_by_key.get((r["lot_id"], r["wafer_id"]))
        name = f"{OVERLAYS}/{wafer_file_name(r['lot_id'], r['wafer_id'])}"
        written.append(name if rec is not None and _draw_overlay(r, rec, out_dir / name) else None)
    return written


def _csv_row(r: dict) -> dict:
    d = r["defects"]
    second = r["top_k"][1] if len(r["top_k"]) > 1 else {"class": "", "probability": ""}
    triage = r.get("triage") or {}
    return {
        "lot_id": r["lot_id"],
        "wafer_id": r["wafer_id"],
        "class": r["class"],
        "confidence": r["confidence"],
        "triage": triage.get("decision", ""),
        "triage_reason": triage.get("reason", ""),
        "novelty": triage.get("novelty", ""),
        "second_class": second["class"],
        "second_probability": second["probability"],
        "severity": d["severity"],
        "fail_density": d["fail_density"],
        "affected_dies": d["affected_dies"],
        "clusters": len(d["clusters"]),
        "edge_ratio": d["edge_ratio"],
        "rows": r["shape"][0],
        "cols": r["shape"][1],
        "model_version": r["model_version"],
    }


def csv_text(results: list[dict]) -> str:
    """``results`` as the CSV :func:`write_predictions` writes (:data:`CSV_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_row(r) for r in results)
    return buffer.getvalue()


def write_predictions(
    results: list[dict], records_by_key: dict[tuple, WaferRecord], out_dir: Path, overlays: bool = False
) -> list[Path]:
    """Write ``predictions.jsonl``, ``predictions.csv`` (:data:`CSV_COLUMNS`) and, with ``overlays``,
    a PNG per wafer under ``overlays/`` whose path each row names in ``overlay`` (empty when it could
    not be drawn); returns what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, table = out_dir / "predictions.jsonl", out_dir / "predictions.csv"
    extra = (
        [{"overlay": name} for name in _write_overlays(results, records_by_key, out_dir)]
        if overlays
        else [{} for _ in results]
    )
    with atomic_path(jsonl) as tmp, tmp.open("w") as fh:
        for r, more in zip(results, extra):
            fh.write(json.dumps({**to_json(r), **more}) + "\n")
    with atomic_path(table) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS + (["overlay"] if overlays else []))
        writer.writeheader()
        for r, more in zip(results, extra):
            writer.writerow({**_csv_row(r), **more})
    return [jsonl, table, out_dir / OVERLAYS] if overlays else [jsonl, table]
