"""Evaluate a WaferUNet on a split: metrics, plots, and (optionally) real labeled wafer maps.

Example:
    >>> report = evaluate_arrays(net, WaferArrays.from_parquet("data/processed/test.parquet"),
    ...                          Path("reports/evaluation"))  # doctest: +SKIP
    >>> report["classification"]["macro_f1"]  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from pathlib import Path


from waferflow.data.ingest import discover, ingest
from waferflow.data.records import read_frame
from waferflow.data.split import resize_frame
from waferflow.evaluation.metrics import classification_metrics, mask_metrics
from waferflow.evaluation.plots import plot_confusion, plot_roc, plot_worst_errors
from waferflow.models.wafer_unet import WaferUNet
from waferflow.registry.pyfunc import predict_grids
from waferflow.training.data import WaferArrays

__all__ = ["evaluate_arrays", "evaluate_real_data", "load_real_arrays"]


def evaluate_arrays(net: WaferUNet, arrays: WaferArrays, plot_dir: Path | None = None, title: str = "test split",
                    prefix: str = "", n_worst: int = 12) -> dict:
    """Metrics of ``net`` on labeled ``arrays``; PNG plots into ``plot_dir`` when given."""
    labeled = arrays.labels >= 0
    probs, pred_masks = predict_grids(net, arrays.grids[labeled])
    y_true = arrays.labels[labeled]
    report = {"classification": classification_metrics(y_true, probs),
              "mask": mask_metrics(arrays.targets[labeled], pred_masks)}
    if plot_dir is not None:
        plots = {
            "confusion_matrix": plot_confusion(y_true, probs.argmax(1), plot_dir / f"{prefix}confusion_matrix.png", title),
            "roc": plot_roc(y_true, probs, plot_dir / f"{prefix}roc.png", title),
            "worst_errors": plot_worst_errors(arrays.grids[labeled], arrays.targets[labeled], pred_masks, y_true, probs,
                                              plot_dir / f"{prefix}worst_errors.png", n=n_worst),
        }
        report["plots"] = {k: str(v) for k, v in plots.items()}
    return report


def load_real_arrays(data_dir: Path, image_size: tuple[int, int]) -> tuple[WaferArrays | None, dict]:
    """Ingest every real source under ``data_dir`` and keep its labeled wafers, resized.

    Returns ``(None, {"available": False, "reason": ...})`` when there is none.
    """
    if not data_dir.is_dir() or not discover([data_dir])[0]:
        return None, {"available": False, "reason": f"no supported files under {data_dir}"}
    with tempfile.TemporaryDirectory() as tmp:
        report = ingest([data_dir], Path(tmp) / "real.parquet", Path(tmp) / "q", progress=False)
        frame = read_frame(Path(tmp) / "real.parquet")
    frame = frame[frame["label"].notna()]
    if frame.empty:
        return None, {"available": False, "reason": f"{report.records} real wafers, none labeled"}
    return WaferArrays(resize_frame(frame, image_size)), {
        "available": True, "source": str(data_dir), "wafers": int(len(frame)), "ingest_rejected": report.rejected}


def evaluate_real_data(net: WaferUNet, data_dir: Path, image_size: tuple[int, int], plot_dir: Path) -> dict:
    """Evaluate on the real labeled wafers under ``data_dir``, apart from the synthetic test split."""
    arrays, info = load_real_arrays(data_dir, image_size)
    if arrays is None:
        return info
    out = evaluate_arrays(net, arrays, plot_dir, title=f"real data: {data_dir.name}", prefix="real_")
    out.update(info)
    return out
