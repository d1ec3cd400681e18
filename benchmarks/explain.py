"""Explanations and similar wafers of the pipeline's model, measured on real WM-811K maps.

After ``make pipeline`` (``models/weights.pt``), with ``../shared/data`` present. On the fixed lot
split of the real maps (``waferflow.evaluation.real_maps``; nothing here is tuned):

* **which encoder stage** the maps are taken at, chosen on 200 random real *dev* maps (seed 0):
  Grad-CAM at stages 0-3 before the pooled one, by the deletion check below at 20 %;
* **faithfulness** of Grad-CAM and Grad-CAM++ at the default stage (``waferflow.explain``) on the
  real *test* lots: delete the top 10 % / 20 % of each wafer's fail dies by the map (fail -> pass)
  against as many random fail dies; the predicted class's mean probability drop for both, and the
  share of wafers where the map's deletion drops it more;
* **similar wafers**: precision@10 (share of the 10 nearest wafers with the query's true class) of
  the real test maps against an index of the real dev maps (their lots never meet), and against
  the generated training maps;
* the time per wafer of a class-activation map and of an index query on this machine.

    .venv/bin/python benchmarks/explain.py [--weights models/weights.pt] [--limit 0]

Writes ``benchmarks/results/explain.json`` and ``benchmarks/results/explain.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from waferflow.classes import CLASSES
from waferflow.config import load_params
from waferflow.data.arrays import WaferArrays
from waferflow.evaluation.real_maps import real_arrays
from waferflow.explain.cam import class_activation_maps
from waferflow.explain.faithfulness import deletion_check
from waferflow.explain.similar import WaferIndex, embed, precision_at_k
from waferflow.fileio import write_json, write_text
from waferflow.registry.pyfunc import load_weights

OUT = Path("benchmarks/results")


def _index(predictor, arrays: WaferArrays) -> WaferIndex:
    wafers = pd.DataFrame(
        {
            "lot_id": arrays.frame["lot_id"].to_numpy(),
            "wafer_id": arrays.frame["wafer_id"].to_numpy(),
            "label": [CLASSES[k] for k in arrays.labels],
        }
    )
    return WaferIndex(embed(predictor, arrays.grids), wafers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--weights", type=Path, default=Path("models/weights.pt"))
    ap.add_argument("--limit", type=int, default=0, help="score only the first N real test maps (0: all)")
    args = ap.parse_args()
    p = load_params(args.params)
    size = tuple(p.preprocess.image_size)
    predictor = load_weights(args.weights)
    parts, info = real_arrays(Path(p.evaluate.real_data_dir), size)
    if parts is None:
        raise SystemExit(f"no real maps: {info}")
    test, dev = parts["test"], parts["dev"]
    if args.limit:
        test = test.take(np.arange(min(args.limit, len(test))))
    result: dict = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.processor() or 'cpu'}",
        "weights": str(args.weights),
        "real": {"test_maps": len(test), "dev_maps": len(dev)},
        "faithfulness": {},
    }
    lines = [f"# Explanations and similar wafers on real maps ({len(test)} test-lot maps)", ""]
    sample = dev.take(np.random.default_rng(0).choice(len(dev), min(200, len(dev)), replace=False))
    lines += ["Stage chosen on 200 random real dev maps (Grad-CAM, 20 % of fail dies deleted):", ""]
    lines += ["| stages before the pooled one | mean drop, top dies | mean drop, random dies | top beats random |"]
    lines += ["| --- | --- | --- | --- |"]
    result["stage_on_dev"] = {}
    for stage in (0, 1, 2, 3):
        maps, explained = class_activation_maps(predictor, list(sample.grids), size, stage=stage)
        check = deletion_check(predictor, list(sample.grids), maps, size, fraction=0.2, classes=explained)
        summary = {k: v for k, v in check.items() if not isinstance(v, np.ndarray)}
        result["stage_on_dev"][stage] = summary
        lines.append(
            f"| {stage} | {summary['mean_drop_top']:.3f} | {summary['mean_drop_random']:.3f} | "
            f"{summary['top_beats_random']:.2f} |"
        )
        print("dev stage", stage, summary, flush=True)
    lines += ["", "Real test lots, default stage:", ""]
    lines += ["| map | deleted | wafers | mean drop, top dies | mean drop, random dies | top beats random |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for method in ("gradcam", "gradcam++"):
        started = time.perf_counter()
        maps, explained = class_activation_maps(predictor, list(test.grids), size, method=method)
        per_wafer_ms = 1000 * (time.perf_counter() - started) / len(test)
        result["faithfulness"][method] = {"ms_per_wafer": round(per_wafer_ms, 2)}
        for fraction in (0.1, 0.2):
            check = deletion_check(predictor, list(test.grids), maps, size, fraction=fraction, classes=explained)
            summary = {k: v for k, v in check.items() if not isinstance(v, np.ndarray)}
            result["faithfulness"][method][f"top_{int(fraction * 100)}pct"] = summary
            lines.append(
                f"| {method} | {int(fraction * 100)} % of fail dies | {summary['wafers']} | "
                f"{summary['mean_drop_top']:.3f} | {summary['mean_drop_random']:.3f} | "
                f"{summary['top_beats_random']:.2f} |"
            )
            print(method, fraction, summary, flush=True)
    lines += ["", "| index | query | precision@10 |", "| --- | --- | --- |"]
    started = time.perf_counter()
    dev_index = _index(predictor, dev)
    query = embed(predictor, test.grids)
    truth = [CLASSES[k] for k in test.labels]
    p_dev = precision_at_k(dev_index, query, truth, k=10)
    query_ms = 1000 * (time.perf_counter() - started) / len(test)
    generated = WaferArrays.from_parquet(Path("data/processed/train.parquet"))
    p_gen = precision_at_k(_index(predictor, generated), query, truth, k=10)
    per_class = {
        c: round(precision_at_k(dev_index, query[test.labels == k], [c] * int((test.labels == k).sum())), 4)
        for k, c in enumerate(CLASSES)
        if (test.labels == k).any()
    }
    result["similar"] = {
        "precision_at_10_real_dev_index": round(p_dev, 4),
        "precision_at_10_generated_train_index": round(p_gen, 4),
        "per_class_real_dev_index": per_class,
        "dev_index_wafers": len(dev_index),
        "generated_index_wafers": len(generated),
        "ms_per_query_incl_index_build": round(query_ms, 2),
    }
    lines += [
        f"| real dev lots ({len(dev_index)} maps) | real test lots | {p_dev:.3f} |",
        f"| generated training maps ({len(generated)}) | real test lots | {p_gen:.3f} |",
        "",
        "precision@10 per class (real dev index): " + ", ".join(f"{c} {v:.2f}" for c, v in per_class.items()),
        "",
        f"Machine: {result['machine']}. Time per wafer: Grad-CAM "
        f"{result['faithfulness']['gradcam']['ms_per_wafer']:.1f} ms, Grad-CAM++ "
        f"{result['faithfulness']['gradcam++']['ms_per_wafer']:.1f} ms (batches of 64).",
    ]
    print(result["similar"], flush=True)
    write_json(OUT / "explain.json", result)
    write_text(OUT / "explain.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
