"""Export WaferUNet to ONNX, check it, prove parity with PyTorch, calibrate, quantise to INT8.

The ONNX graph takes ``input`` (N, 2, H, W) float32 with a dynamic batch axis and returns two
named outputs, ``mask_logits`` (N, 9, H, W) and ``class_logits`` (N, 9). Beside it,
``metadata.json`` holds what serving needs: class names, input size, and the softmax
temperature fitted on the validation split (temperature scaling), so served confidences are
calibrated.

Example:
    >>> report = export_onnx(net, Path("models/onnx"), val_arrays, test_arrays)  # doctest: +SKIP
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
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from waferflow.classes import CLASSES
from waferflow.evaluation.metrics import classification_metrics
from waferflow.fileio import write_json
from waferflow.models.encoding import encode_grids
from waferflow.models.wafer_unet import WaferUNet

__all__ = ["ParityError", "export_onnx", "fit_temperature", "onnx_logits", "torch_logits", "OPSET"]

OPSET = 17
INPUT, MASK_OUT, CLASS_OUT = "input", "mask_logits", "class_logits"


class ParityError(RuntimeError):
    """The ONNX model does not reproduce the PyTorch model."""


@torch.no_grad()
def torch_logits(net: WaferUNet, grids: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    masks, classes = [], []
    for start in range(0, len(grids), batch_size):
        m, c = net(encode_grids(grids[start:start + batch_size]))
        masks.append(m.numpy())
        classes.append(c.numpy())
    return np.concatenate(masks), np.concatenate(classes)


def onnx_logits(session: ort.InferenceSession, grids: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    masks, classes = [], []
    for start in range(0, len(grids), batch_size):
        m, c = session.run([MASK_OUT, CLASS_OUT], {INPUT: encode_grids(grids[start:start + batch_size]).numpy()})
        masks.append(m)
        classes.append(c)
    return np.concatenate(masks), np.concatenate(classes)


def fit_temperature(class_logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the validation NLL of softmax(logits / T) (Guo et al., 2017)."""
    def nll(t: float) -> float:
        return float(-log_softmax(class_logits / t, axis=1)[np.arange(len(labels)), labels].mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


class _Calibration(CalibrationDataReader):
    def __init__(self, grids: np.ndarray, batch_size: int = 16) -> None:
        self.batches = iter([{INPUT: encode_grids(grids[i:i + batch_size]).numpy()}
                             for i in range(0, len(grids), batch_size)])

    def get_next(self):
        return next(self.batches, None)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def export_onnx(net: WaferUNet, out_dir: Path, val_grids: np.ndarray, val_labels: np.ndarray,
                test_grids: np.ndarray, test_labels: np.ndarray, tolerance: float = 1e-4,
                max_int8_f1_drop: float = 0.005, calibration_size: int = 256, seed: int = 0) -> dict:
    """Export, check, verify parity on the test split, fit the temperature, try INT8.

    Raises :class:`ParityError` (after writing the report) when the FP32 model is not faithful.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval().to(memory_format=torch.contiguous_format)
    h, w = test_grids.shape[1:]
    fp32 = out_dir / "model.onnx"
    torch.onnx.export(net, (torch.zeros(1, 2, h, w),), str(fp32), input_names=[INPUT],
                      output_names=[MASK_OUT, CLASS_OUT], opset_version=OPSET, dynamo=False,
                      dynamic_axes={INPUT: {0: "batch"}, MASK_OUT: {0: "batch"}, CLASS_OUT: {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(fp32)), full_check=True)

    ref_mask, ref_class = torch_logits(net, test_grids)
    got_mask, got_class = onnx_logits(_session(fp32), test_grids)
    parity = {
        "wafers": int(len(test_grids)), "tolerance": tolerance,
        "max_abs_diff_mask_logits": float(np.abs(ref_mask - got_mask).max()),
        "max_abs_diff_class_logits": float(np.abs(ref_class - got_class).max()),
        "class_mismatches": int((ref_class.argmax(1) != got_class.argmax(1)).sum()),
        "mask_die_mismatches": int((ref_mask.argmax(1) != got_mask.argmax(1)).sum()),
    }
    parity["passed"] = bool(parity["max_abs_diff_mask_logits"] < tolerance and parity["max_abs_diff_class_logits"]
                            < tolerance and parity["class_mismatches"] == 0)

    _, val_class = onnx_logits(_session(fp32), val_grids)
    temperature = fit_temperature(val_class, val_labels)
    fp32_f1 = classification_metrics(test_labels, got_class)["macro_f1"]

    # INT8: static QDQ quantisation calibrated on validation wafers; kept only if it costs
    # at most `max_int8_f1_drop` macro-F1 on the test split.
    pre = out_dir / "model.pre.onnx"
    int8 = out_dir / "model.int8.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    rng = np.random.default_rng(seed)
    calib = val_grids[rng.permutation(len(val_grids))[:calibration_size]]
    quantize_static(str(pre), str(int8), _Calibration(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    pre.unlink()
    _, int8_class = onnx_logits(_session(int8), test_grids)
    int8_f1 = classification_metrics(test_labels, int8_class)["macro_f1"]
    int8_report = {"macro_f1": int8_f1, "fp32_macro_f1": fp32_f1, "macro_f1_drop": round(fp32_f1 - int8_f1, 6),
                   "max_drop": max_int8_f1_drop, "kept": bool(fp32_f1 - int8_f1 <= max_int8_f1_drop),
                   "size_mb": round(int8.stat().st_size / 2**20, 2), "fp32_size_mb": round(fp32.stat().st_size / 2**20, 2)}
    if not int8_report["kept"]:
        int8.unlink()

    metadata = {"classes": list(CLASSES), "input_size": [int(h), int(w)], "temperature": round(temperature, 6),
                "opset": OPSET, "inputs": {INPUT: "float32 (N, 2, H, W): wafer area, fail dies"},
                "outputs": {MASK_OUT: "(N, 9, H, W)", CLASS_OUT: "(N, 9)"}, "int8": int8_report["kept"]}
    write_json(out_dir / "metadata.json", metadata, sort_keys=False)
    report = {"parity": parity, "temperature": metadata["temperature"], "int8": int8_report}
    write_json(out_dir / "export.json", report, sort_keys=False)
    if not parity["passed"]:
        raise ParityError(f"ONNX parity failed on {parity['wafers']} test wafers: max |diff| mask "
                          f"{parity['max_abs_diff_mask_logits']:.2e}, class {parity['max_abs_diff_class_logits']:.2e} "
                          f"(tolerance {tolerance:.0e}), {parity['class_mismatches']} class mismatches")
    return report
