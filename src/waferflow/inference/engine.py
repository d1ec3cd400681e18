"""The inference engine: ONNX Runtime over the exported WaferUNet (and the pattern trees and
density CNN beside it, blended into the served class), with defect metrics.

Load by registry alias (``InferenceEngine.from_registry("champion")``) or by path
(``InferenceEngine.from_path("models/onnx/model.onnx")``). ``predict`` takes one wafer or many,
as canonical records or raw die grids of any size; each grid is resized to the model input
exactly as in training, and the predicted mask is mapped back to the grid's original shape.
One ONNX Runtime session serves all threads (``InferenceSession.run`` is thread-safe). With a
``prediction_log`` every prediction is appended to it (:mod:`waferflow.inference.prediction_log`).

Example:
    >>> engine = InferenceEngine.from_path("models/onnx/model.onnx")  # doctest: +SKIP
    >>> result = engine.predict(die_grid)[0]  # doctest: +SKIP
    >>> result["class"], result["confidence"], result["defects"]["severity"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort
from scipy.special import softmax

from waferflow.classes import DIE_FAIL
from waferflow.data.records import WaferRecord
from waferflow.data.resize import resize_grid
from waferflow.inference.defects import defect_metrics
from waferflow.models.encoding import encode_grids
from waferflow.inference.prediction_log import PredictionLog
from waferflow.patterns.trees import PatternClassifier
from waferflow.triage.decide import decide

__all__ = ["InferenceEngine", "check_die_grid", "to_json"]


def check_die_grid(grid: np.ndarray, name: str = "die grid") -> np.ndarray:
    """A 2-D uint8 grid of codes 0/1/2 with at least one die, or a ValueError saying why not."""
    arr = np.asarray(grid)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D die grid, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty die grid")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1, 2)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1, 2))])[:5] if arr.dtype.kind in "biuf" else arr.dtype
        raise ValueError(f"{name}: die codes must be 0 (no die), 1 (pass), 2 (fail); found {bad}")
    if not (arr != 0).any():
        raise ValueError(f"{name}: no die on the wafer (all codes 0)")
    return arr.astype(np.uint8)


class InferenceEngine:
    """ONNX Runtime session + metadata (classes, input size, calibration temperature)."""

    def __init__(
        self,
        onnx_path: str | Path,
        metadata: dict,
        threads: int | None = None,
        prediction_log: PredictionLog | None = None,
        alias: str | None = None,
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.path = Path(onnx_path)
        self.classes: list[str] = list(metadata["classes"])
        self.input_size = tuple(metadata["input_size"])
        self.temperature = float(metadata.get("temperature", 1.0))  # inside the graph (legacy exports: applied here)
        outputs = {o.name for o in self.session.get_outputs()}
        self._legacy = "class_probs" not in outputs
        # Open-set triage: the graph's novelty score and the thresholds calibrated with it (an
        # export without a novelty head answers without triage).
        self.triage: dict | None = metadata.get("triage") if "novelty" in outputs else None
        self.model_version: str | None = metadata.get("model_version")
        # The pattern trees beside the graph (and the density CNN their metadata names): the served
        # class blends their probabilities in (an export without them answers with the U-Net alone).
        trees = metadata.get("patterns")
        self.patterns = (
            PatternClassifier(self.path.with_name(trees["file"]), trees, options.intra_op_num_threads)
            if trees
            else None
        )
        self.prediction_log, self.alias = prediction_log, alias  # every prediction is logged when set

    @classmethod
    def from_path(cls, onnx_path: str | Path, threads: int | None = None, **kwargs) -> "InferenceEngine":
        path = Path(onnx_path)
        meta_path = path.with_name("metadata.json")
        if not path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(f"{path} and {meta_path} are needed; run the export stage (dvc repro export)")
        return cls(path, json.loads(meta_path.read_text()), threads, **kwargs)

    @classmethod
    def from_registry(
        cls,
        model_name: str,
        alias: str = "champion",
        int8: bool = False,
        threads: int | None = None,
        version: str | None = None,
        **kwargs,
    ) -> "InferenceEngine":
        """The ONNX export logged beside the registered version ``alias`` (or ``version``) names."""
        import mlflow
        from mlflow import MlflowClient

        client = MlflowClient()
        if version is not None:
            mv = client.get_model_version(model_name, str(version))
            label = f"{model_name} version {mv.version}"
        else:
            mv = client.get_model_version_by_alias(model_name, alias)
            label = f"{model_name}@{alias} (version {mv.version})"
        try:
            local = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="onnx"))
        except Exception as exc:  # MLflow raises its own error types for a missing artifact path
            raise FileNotFoundError(f"{label} has no ONNX export (onnx/ in run {mv.run_id}): {exc}") from None
        name = "model.int8.onnx" if int8 else "model.onnx"
        if not (local / name).is_file():
            raise FileNotFoundError(f"{label} has no onnx/{name}; run the export stage for it")
        meta = json.loads((local / "metadata.json").read_text())
        meta["model_version"] = str(mv.version)
        return cls(local / name, meta, threads, **{"alias": None if version else alias, **kwargs})

    def predict_arrays(self, grids: np.ndarray, shapes=None) -> tuple[np.ndarray, np.ndarray]:
        """Served class probabilities (N, 9) and fail-die masks (N, H, W) for grids already at
        the model's input size, of original ``shapes`` (the pattern trees' features are taken at
        the wafer's own size; None: at the given size)."""
        return self.run_arrays(grids, shapes)[:2]

    def run_arrays(self, grids: np.ndarray, shapes=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`predict_arrays` and the novelty scores (N,) — None when the export has no triage."""
        probs, masks, novelty = self._graph(grids)
        if self.patterns is not None:
            probs = self.patterns.blend(probs, np.asarray(grids), shapes)
        return probs, masks, novelty

    def _graph(self, grids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The exported graph's class probabilities, masks and novelty scores."""
        x = {"input": encode_grids(grids).numpy()}
        if self.triage is not None:
            probs, masks, novelty = self.session.run(["class_probs", "mask", "novelty"], x)
            return probs, masks, novelty
        if not self._legacy:
            probs, masks = self.session.run(["class_probs", "mask"], x)
            return probs, masks, None
        # An export from before the predictor held its post-processing: same steps, done here.
        mask_logits, class_logits = self.session.run(["mask_logits", "class_logits"], x)
        masks = mask_logits.argmax(1).astype(np.uint8)
        masks[np.asarray(grids) != DIE_FAIL] = 0
        return softmax(class_logits / self.temperature, axis=1), masks, None

    def predict(
        self,
        wafers: WaferRecord | np.ndarray | Sequence[WaferRecord | np.ndarray],
        top_k: int = 3,
        batch_size: int = 64,
    ) -> list[dict]:
        """Class, calibrated confidence, top-k, mask at original size, defect metrics and triage
        (``decision``, ``reason``, ``novelty``, ``novelty_p``, ``prediction_set``; None for an
        export without a novelty head) per wafer."""
        items = (
            [wafers]
            if isinstance(wafers, WaferRecord) or (isinstance(wafers, np.ndarray) and wafers.ndim == 2)
            else list(wafers)
        )
        grids, ids = [], []
        for i, item in enumerate(items):
            if isinstance(item, WaferRecord):
                grids.append(check_die_grid(item.die_grid, f"wafer {item.lot_id}/{item.wafer_id}"))
                ids.append({"lot_id": item.lot_id, "wafer_id": item.wafer_id})
            else:
                grids.append(check_die_grid(item, f"wafer #{i}"))
                ids.append({"lot_id": None, "wafer_id": str(i)})
        results, started = [], time.perf_counter()
        for start in range(0, len(grids), batch_size):
            chunk = grids[start : start + batch_size]
            batch = np.stack([resize_grid(g, self.input_size) for g in chunk])
            probs, masks, novelty = self.run_arrays(batch, [g.shape for g in chunk])
            triage = decide(probs, novelty, self.triage) if novelty is not None else [None] * len(chunk)
            for j, grid in enumerate(chunk):
                mask = resize_grid(masks[j], grid.shape)
                mask[grid != DIE_FAIL] = 0
                order = np.argsort(-probs[j])[:top_k]
                cls = self.classes[int(order[0])]
                results.append(
                    {
                        **ids[start + j],
                        "class": cls,
                        "confidence": round(float(probs[j, order[0]]), 6),
                        "top_k": [
                            {"class": self.classes[int(k)], "probability": round(float(probs[j, k]), 6)} for k in order
                        ],
                        "shape": list(grid.shape),
                        "mask": mask,
                        "defects": defect_metrics(grid, mask, cls),
                        "triage": triage[j],
                        "model_version": self.model_version,
                    }
                )
        if self.prediction_log is not None:  # never raises: a failed write is reported and counted
            self.prediction_log.append(
                results,
                grids,
                alias=self.alias,
                latency_ms=1000 * (time.perf_counter() - started) / max(1, len(results)),
            )
        return results


def to_json(result: dict) -> dict:
    """A prediction with its mask as nested lists, ready for json.dumps."""
    return {**result, "mask": result["mask"].tolist()}
