"""Export the served model to ONNX, check it, prove parity with PyTorch, quantise to INT8.

What is exported is the :class:`~waferflow.models.predictor.WaferPredictor` itself: the graph
takes ``input`` (N, 2, H, W) float32 with a dynamic batch axis and returns ``class_probs``
(N, 9, calibrated with the predictor's temperature), ``mask`` (N, H, W) uint8 (fail dies only)
and ``class_logits`` (N, 9) — the numbers the pyfunc and every other caller of the predictor
get. Beside it, ``metadata.json`` holds class names, input size and the temperature (for the
record: it is already inside the graph).

Example:
    >>> report = export_onnx(predictor, Path("models/onnx"), val.grids, test.grids, test.labels)  # doctest: +SKIP
    >>> report["parity"]["passed"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

from waferflow.classes import CLASSES
from waferflow.evaluation.metrics import classification_metrics
from waferflow.fileio import atomic_path, write_json
from waferflow.models.encoding import encode_grids
from waferflow.models.predictor import WaferPredictor, as_predictor
from waferflow.models.wafer_unet import WaferUNet
from waferflow.patterns.density import DENSITY_FILE  # the density CNN beside the trees
from waferflow.patterns.trees import PatternClassifier

__all__ = ["ParityError", "export_onnx", "onnx_outputs", "OPSET", "INPUT", "OUTPUTS", "PATTERNS_FILE"]

OPSET = 17
INPUT = "input"
OUTPUTS = ("class_probs", "mask", "class_logits")  # WaferPredictor.forward, in order
NOVELTY = "novelty"  # TriagedPredictor adds it: (N,) novelty score
PATTERNS_FILE = "patterns.onnx"  # the pattern trees beside the graph (waferflow.patterns)


NOVELTY_TOLERANCE = 1e-3  # max |novelty difference| ONNX vs PyTorch (the score's scale is ~1)


class ParityError(RuntimeError):
    """The ONNX model does not reproduce the PyTorch model."""


def onnx_outputs(session: ort.InferenceSession, grids: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, ...]:
    """(class_probs, mask, class_logits[, novelty]) of an exported predictor for die grids at its
    input size (novelty when the graph has it)."""
    names = [o.name for o in session.get_outputs()]
    names = [n for n in (*OUTPUTS, NOVELTY) if n in names]
    outs: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, len(grids), batch_size):
        for out, value in zip(
            outs, session.run(names, {INPUT: encode_grids(grids[start : start + batch_size]).numpy()})
        ):
            out.append(value)
    return tuple(np.concatenate(out) for out in outs)


class _Calibration(CalibrationDataReader):
    def __init__(self, grids: np.ndarray, batch_size: int = 16) -> None:
        self.batches = iter(
            [{INPUT: encode_grids(grids[i : i + batch_size]).numpy()} for i in range(0, len(grids), batch_size)]
        )

    def get_next(self):
        return next(self.batches, None)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def export_onnx(
    model: WaferPredictor | WaferUNet,
    out_dir: Path,
    val_grids: np.ndarray,
    test_grids: np.ndarray,
    test_labels: np.ndarray,
    tolerance: float = 1e-4,
    max_int8_f1_drop: float = 0.005,
    calibration_size: int = 256,
    seed: int = 0,
    novelty_head=None,
    triage: dict | None = None,
    patterns: PatternClassifier | None = None,
) -> dict:
    """Export, check, verify parity on the test split, try INT8 calibrated on ``val_grids`` (the
    predictor's temperature was fitted with its training run). With a ``novelty_head``
    (:class:`~waferflow.triage.novelty.NoveltyHead`) the graph also outputs ``novelty`` from the
    same encoder pass, and ``triage`` (its calibration) goes into the metadata. ``patterns`` (the
    pattern trees, :class:`~waferflow.patterns.trees.PatternClassifier`) is copied beside the
    graph as ``patterns.onnx`` (its density CNN, when it has one, as ``density.onnx``) and named in
    the metadata: the engine blends their probabilities with the graph's (the INT8 check compares
    the U-Net graphs alone).

    Raises :class:`ParityError` (after writing the report) when the FP32 model is not faithful.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = as_predictor(model).eval().to(memory_format=torch.contiguous_format)
    module: torch.nn.Module = predictor
    outputs = list(OUTPUTS)
    if novelty_head is not None:
        from waferflow.triage.novelty import TriagedPredictor

        module, outputs = TriagedPredictor(predictor, novelty_head.cpu()).eval(), [*OUTPUTS, NOVELTY]
    h, w = test_grids.shape[1:]
    fp32 = out_dir / "model.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(1, 2, h, w),),
        str(fp32),
        input_names=[INPUT],
        output_names=outputs,
        opset_version=OPSET,
        dynamo=False,
        dynamic_axes={name: {0: "batch"} for name in (INPUT, *outputs)},
    )
    onnx.checker.check_model(onnx.load(str(fp32)), full_check=True)

    ref_probs, ref_mask, ref_logits, *ref_novelty = module.run(test_grids)
    got_probs, got_mask, got_logits, *got_novelty = onnx_outputs(_session(fp32), test_grids)
    parity = {
        "wafers": int(len(test_grids)),
        "tolerance": tolerance,
        "max_abs_diff_class_logits": float(np.abs(ref_logits - got_logits).max()),
        "max_abs_diff_class_probs": float(np.abs(ref_probs - got_probs).max()),
        "class_mismatches": int((ref_probs.argmax(1) != got_probs.argmax(1)).sum()),
        "mask_die_mismatches": int((ref_mask != got_mask).sum()),
    }
    if novelty_head is not None:  # a standardised log distance: relative float32 error of a 1k-d whitening
        parity["max_abs_diff_novelty"] = float(np.abs(ref_novelty[0] - got_novelty[0]).max())
        parity["novelty_tolerance"] = NOVELTY_TOLERANCE
    parity["passed"] = bool(
        parity["max_abs_diff_class_logits"] < tolerance
        and parity["max_abs_diff_class_probs"] < tolerance
        and parity["class_mismatches"] == 0
        and parity.get("max_abs_diff_novelty", 0.0) < NOVELTY_TOLERANCE
    )
    temperature = float(predictor.temperature)
    fp32_f1 = classification_metrics(test_labels, got_probs)["macro_f1"]

    # INT8: static QDQ quantisation calibrated on validation wafers; kept only if it costs
    # at most `max_int8_f1_drop` macro-F1 on the test split.
    pre = out_dir / "model.pre.onnx"
    int8 = out_dir / "model.int8.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    rng = np.random.default_rng(seed)
    calib = val_grids[rng.permutation(len(val_grids))[:calibration_size]]
    quantize_static(
        str(pre),
        str(int8),
        _Calibration(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    pre.unlink()
    int8_f1 = classification_metrics(test_labels, onnx_outputs(_session(int8), test_grids)[0])["macro_f1"]
    int8_report = {
        "macro_f1": int8_f1,
        "fp32_macro_f1": fp32_f1,
        "macro_f1_drop": round(fp32_f1 - int8_f1, 6),
        "max_drop": max_int8_f1_drop,
        "kept": bool(fp32_f1 - int8_f1 <= max_int8_f1_drop),
        "size_mb": round(int8.stat().st_size / 2**20, 2),
        "fp32_size_mb": round(fp32.stat().st_size / 2**20, 2),
    }
    if not int8_report["kept"]:
        int8.unlink()

    metadata = {
        "classes": list(CLASSES),
        "input_size": [int(h), int(w)],
        "temperature": round(temperature, 6),
        "opset": OPSET,
        "inputs": {INPUT: "float32 (N, 2, H, W): wafer area, fail dies"},
        "outputs": {
            "class_probs": "(N, 9) calibrated probabilities",
            "mask": "(N, H, W) uint8 pattern class per fail die (0 = background)",
            "class_logits": "(N, 9)",
            **({NOVELTY: "(N,) novelty score (larger = less like known wafers)"} if novelty_head is not None else {}),
        },
        "int8": int8_report["kept"],
        **({"triage": triage} if triage is not None else {}),
    }
    (out_dir / PATTERNS_FILE).unlink(missing_ok=True)
    (out_dir / DENSITY_FILE).unlink(missing_ok=True)
    if patterns is not None:
        with atomic_path(out_dir / PATTERNS_FILE) as tmp:
            tmp.write_bytes(patterns.path.read_bytes())
        metadata["patterns"] = {
            "file": PATTERNS_FILE,
            **{k: patterns.meta[k] for k in ("unet_weight", "classes", "features", "fitted_on", "trees")},
            "class_weights": patterns.class_weights,
        }
        if patterns.density is not None:  # the density CNN beside them, whatever its name in data/patterns
            with atomic_path(out_dir / DENSITY_FILE) as tmp:
                tmp.write_bytes(patterns.density_path.read_bytes())
            metadata["patterns"]["density"] = {**patterns.density, "file": DENSITY_FILE}
    if novelty_head is not None:  # the explanation's novelty heatmap needs the head in torch
        from waferflow.triage.novelty import HEAD_FILE

        with atomic_path(out_dir / HEAD_FILE) as tmp:
            torch.save(novelty_head.state(), tmp)
    write_json(out_dir / "metadata.json", metadata, sort_keys=False)
    report = {"parity": parity, "temperature": metadata["temperature"], "int8": int8_report}
    write_json(out_dir / "export.json", report, sort_keys=False)
    if not parity["passed"]:
        raise ParityError(
            f"ONNX parity failed on {parity['wafers']} test wafers: mask differs on "
            f"{parity['mask_die_mismatches']} dies, max |diff| class logits {parity['max_abs_diff_class_logits']:.2e}, "
            f"probabilities {parity['max_abs_diff_class_probs']:.2e} (tolerance {tolerance:.0e}), "
            f"{parity['class_mismatches']} class mismatches"
            + (f", max |diff| novelty {parity['max_abs_diff_novelty']:.2e}" if novelty_head is not None else "")
        )
    return report
