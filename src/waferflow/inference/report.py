"""Write predictions for people and tools: JSON lines, a CSV summary, overlay PNGs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from waferflow.data.records import WaferRecord  # noqa: E402
from waferflow.inference.engine import to_json  # noqa: E402
from waferflow.viz.wafer_plots import plot_wafer  # noqa: E402

__all__ = ["write_predictions", "CSV_COLUMNS"]

CSV_COLUMNS = ["lot_id", "wafer_id", "class", "confidence", "second_class", "second_probability", "severity",
               "fail_density", "affected_dies", "clusters", "edge_ratio", "rows", "cols", "model_version"]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_predictions(results: list[dict], records_by_key: dict[tuple, WaferRecord], out_dir: Path,
                      overlays: bool = False) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, table = out_dir / "predictions.jsonl", out_dir / "predictions.csv"
    with jsonl.open("w") as fh:
        for r in results:
            fh.write(json.dumps(to_json(r)) + "\n")
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in results:
            d = r["defects"]
            second = r["top_k"][1] if len(r["top_k"]) > 1 else {"class": "", "probability": ""}
            writer.writerow({"lot_id": r["lot_id"], "wafer_id": r["wafer_id"], "class": r["class"],
                             "confidence": r["confidence"], "second_class": second["class"],
                             "second_probability": second["probability"], "severity": d["severity"],
                             "fail_density": d["fail_density"], "affected_dies": d["affected_dies"],
                             "clusters": len(d["clusters"]), "edge_ratio": d["edge_ratio"], "rows": r["shape"][0],
                             "cols": r["shape"][1], "model_version": r["model_version"]})
    paths = [jsonl, table]
    if overlays:
        folder = out_dir / "overlays"
        folder.mkdir(exist_ok=True)
        for r in results:
            rec = records_by_key.get((r["lot_id"], r["wafer_id"]))
            if rec is None:
                continue
            fig, ax = plt.subplots(figsize=(3.2, 3.4))
            plot_wafer(ax, rec.die_grid, r["mask"], f"{r['lot_id']}/{r['wafer_id']}: {r['class']} "
                       f"{r['confidence']:.2f}, severity {r['defects']['severity']}")
            fig.tight_layout()
            fig.savefig(folder / f"{_safe(str(r['lot_id']))}_{_safe(str(r['wafer_id']))}.png", dpi=110)
            plt.close(fig)
        paths.append(folder)
    return paths
