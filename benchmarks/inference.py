"""Inference speed, measured in one run: torch eager vs ONNX Runtime FP32 vs ONNX INT8, and the
served path (the FP32 graph, the pattern trees with their features computed per wafer, and the
density CNN when served), and the density CNN's own share of it.

Per-wafer latency p50/p95/p99 at batch 1 and throughput at batch 64 on the test split's
wafers at the model input size, plus the ratios to torch eager. Run after `dvc repro export`:

    .venv/bin/python benchmarks/inference.py [--threads 2] [--repeats 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from waferflow.data.arrays import WaferArrays
from waferflow.inference.engine import InferenceEngine
from waferflow.models.encoding import encode_grids
from waferflow.patterns.features import original_shapes
from waferflow.registry.pyfunc import load_weights


def _time(fn, inputs: list, repeats: int) -> np.ndarray:
    for x in inputs[:5]:
        fn(x)  # warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(inputs[i % len(inputs)])
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--export-dir", type=Path, default=Path("export"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = WaferArrays.from_parquet("data/processed/test.parquet")
    grids = test.grids
    starts = range(0, len(grids) - args.batch + 1, args.batch)
    singles = [encode_grids(grids[i : i + 1]) for i in range(min(len(grids), 200))]
    batches = [encode_grids(grids[i : i + args.batch]) for i in starts]

    net = load_weights("models/weights.pt").eval()
    engines = {}

    @torch.no_grad()
    def eager(x):
        return net(x)

    engines["torch eager"] = (eager, singles, batches)
    for name, file in (("ONNX FP32", "model.onnx"), ("ONNX INT8", "model.int8.onnx")):
        path = args.export_dir / file
        if not path.is_file():
            print(f"{name}: {path} missing (not exported or not kept), skipped")
            continue
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        engines[name] = ((lambda s: lambda x: s.run(None, {"input": x.numpy()}))(session), singles, batches)
    served = InferenceEngine.from_path(args.export_dir / "model.onnx", threads=args.threads)
    if served.patterns is not None:  # the engine's own path: graph, features at the wafer's size, trees, blend
        shapes = original_shapes(test.frame, grids)
        one = [(grids[i : i + 1], shapes[i : i + 1]) for i in range(len(singles))]
        many = [(grids[i : i + args.batch], shapes[i : i + args.batch]) for i in starts]
        cnn = " + density CNN" if served.patterns.density_session is not None else ""
        engines[f"served: ONNX FP32 + pattern trees{cnn}"] = (lambda gs: served.run_arrays(gs[0], gs[1]), one, many)
        if cnn:  # its share of the served path: the picture (scipy) and its ONNX graph
            engines["the density CNN alone (picture + ONNX)"] = (
                lambda gs: served.patterns.proba_density(gs[0]),
                one,
                many,
            )

    rows = []
    for name, (fn, one, many) in engines.items():
        lat = _time(fn, one, args.repeats)
        bat = _time(fn, many, max(10, args.repeats // 20))
        rows.append((name, *np.percentile(lat, [50, 95, 99]), args.batch / (np.median(bat) / 1000)))
    base_p95, base_tp = rows[0][2], rows[0][4]
    print(
        f"\n{torch.get_num_threads()} threads, input {tuple(grids.shape[1:])}, {len(singles)} wafers at batch 1 "
        f"x {args.repeats} runs, batch {args.batch}"
    )
    print(f"| engine | p50 ms | p95 ms | p99 ms | wafers/s at batch {args.batch} | p95 speed-up | throughput ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, p50, p95, p99, tp in rows:
        print(
            f"| {name} | {p50:.2f} | {p95:.2f} | {p99:.2f} | {tp:.0f} | {base_p95 / p95:.2f}x | {tp / base_tp:.2f}x |"
        )


if __name__ == "__main__":
    main()
