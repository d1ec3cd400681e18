"""Speed of the patterns stage's inputs, measured in one run: drawing generated maps, and their
pattern features in one process against ``patterns.feature_jobs`` worker processes.

Draws ``--per-class`` generated maps a class with the patterns stage's own-map settings
(``patterns.own_maps`` of params.yaml, its count replaced), resizes them to the model input as the
stage does, then takes their features once in this process and once in ``--jobs`` processes
(-1: every core), checks the two are the same array and prints seconds, wafers a second and the
ratio. The machine (CPU model, cores this process may use) is printed with the figures: absolute
times differ about 3x between 2-core machines of one kind, so compare the ratio.

    .venv/bin/python benchmarks/feature_speed.py [--per-class 200] [--jobs -1]

Writes ``benchmarks/results/feature_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from waferflow.config import load_params
from waferflow.patterns.config import OwnMapsConfig
from waferflow.patterns.features import feature_workers, grid_features
from waferflow.patterns.own_maps import own_map_grids

RESULTS = Path(__file__).parent / "results" / "feature_speed.json"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=-1)
    args = ap.parse_args()
    if args.per_class < 112:  # fewer than 1 000 wafers: grid_features keeps one process
        raise SystemExit("--per-class must be >= 112 (two chunks of 500 wafers) for the workers to take part")

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    own = params.patterns.own_maps or OwnMapsConfig()
    own = own.model_copy(update={"per_class": args.per_class})
    size = tuple(params.preprocess.image_size)

    t0 = time.perf_counter()
    grids, shapes, _ = own_map_grids(params.synth, own, size, progress=True)
    draw_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    one = grid_features(grids, shapes, progress=True, desc="features, 1 process")
    one_s = time.perf_counter() - t0
    workers = feature_workers(args.jobs)
    t0 = time.perf_counter()
    many = grid_features(grids, shapes, progress=True, desc=f"features, {workers} processes", n_jobs=args.jobs)
    many_s = time.perf_counter() - t0
    if not np.array_equal(one, many):
        raise SystemExit("the features computed in worker processes differ from one process's")

    n = len(grids)
    result = {
        "machine": {"cpu": cpu_model(), "usable_cores": feature_workers(-1)},
        "wafers": n,
        "draw_seconds": round(draw_s, 1),
        "features_one_process_seconds": round(one_s, 1),
        "features_workers": workers,
        "features_workers_seconds": round(many_s, 1),
        "speedup": round(one_s / many_s, 2),
        "wafers_per_second": {
            "draw": round(n / draw_s, 1),
            "features_1": round(n / one_s, 1),
            "features_n": round(n / many_s, 1),
        },
        "same_features": True,
    }
    machine = result["machine"]
    print(
        f"{machine['cpu']} ({machine['usable_cores']} usable cores): {n} generated maps drawn in {draw_s:.1f} s; "
        f"features {one_s:.1f} s in 1 process, {many_s:.1f} s in {workers} (x{result['speedup']}), the same array"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
