"""Detection and false-alarm rates of the drift check on generated production streams.

The reference window is an unshifted stream of ``--reference`` wafers (seed 0); for each seed
1..``--seeds`` and each scenario of :mod:`waferflow.monitoring.scenarios` a current window of
``--window`` wafers (a comma list sweeps window sizes) is checked with ``params.yaml → drift``.
Prints, per window size and scenario, the share of windows where ``retrain_recommended``
(detection rate; false-alarm rate for ``unshifted``) and the mean share of drifted features;
writes ``benchmarks/results/drift_detection.json``. Wafers of one lot share a background fail
rate, so small windows hold few independent lots: the sweep shows how small a window may be
before unshifted production raises alarms (``drift.min_wafers``).

    .venv/bin/python benchmarks/drift_detection.py [--seeds 10 --window 100,150,300,500]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from waferflow.config import load_params
from waferflow.monitoring.drift import check_drift
from waferflow.data.features import feature_frame
from waferflow.monitoring.scenarios import SCENARIOS, stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--window", default="100,150,300,500", help="Window size(s), comma-separated.")
    ap.add_argument("--reference", type=int, default=1000)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/drift_detection.json"))
    args = ap.parse_args()
    cfg = load_params(args.params).drift
    started = time.perf_counter()
    reference = feature_frame(r.die_grid for r in stream("unshifted", args.reference, seed=0))
    sizes = [int(w) for w in str(args.window).split(",")]
    cfg = cfg.model_copy(update={"min_wafers": min(sizes)})
    rows = []
    for size in sizes:
        for seed in tqdm(range(1, args.seeds + 1), desc=f"windows of {size}"):
            for scenario in SCENARIOS:
                current = feature_frame(r.die_grid for r in stream(scenario, size, seed=seed))
                s = check_drift(reference, current, cfg).summary
                rows.append(
                    {
                        "window": size,
                        "scenario": scenario,
                        "seed": seed,
                        "retrain_recommended": s["retrain_recommended"],
                        "drifted_share": s["drifted_share"],
                        "reasons": s["reasons"],
                    }
                )
    table = {}
    for size in sizes:
        for scenario in SCENARIOS:
            mine = [r for r in rows if r["scenario"] == scenario and r["window"] == size]
            table[f"{scenario}@{size}"] = {
                "window": size,
                "scenario": scenario,
                "windows": len(mine),
                "alarm_rate": float(np.mean([r["retrain_recommended"] for r in mine])),
                "mean_drifted_share": round(float(np.mean([r["drifted_share"] for r in mine])), 3),
            }
    print("| window | " + " | ".join(SCENARIOS) + " |")
    print("| --- |" + " --- |" * len(SCENARIOS))
    for size in sizes:
        print(
            f"| {size} | "
            + " | ".join(
                f"{table[f'{sc}@{size}']['alarm_rate']:.0%} ({table[f'{sc}@{size}']['mean_drifted_share']:.2f})"
                for sc in SCENARIOS
            )
            + " |"
        )
    print(
        "cells: share of windows that recommend retraining (false alarms for unshifted, detections otherwise) "
        "and, in brackets, the mean share of drifted features"
    )
    seconds = time.perf_counter() - started
    print(f"{len(rows)} windows ({args.seeds} seeds) against {args.reference} reference wafers in {seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "drift": cfg.model_dump(),
                "summary": table,
                "rows": rows,
                "seconds": round(seconds, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
