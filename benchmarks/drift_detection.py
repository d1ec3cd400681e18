"""Detection and false-alarm rates of the drift check on generated production streams.

The reference window is an unshifted stream of ``--reference`` wafers (seed 0); for each seed
1..``--seeds`` and each scenario of :mod:`waferflow.monitoring.scenarios` a current window of
``--window`` wafers is checked with ``params.yaml → drift``. Prints, per scenario, the share of
windows where ``retrain_recommended`` (detection rate; false-alarm rate for ``unshifted``) and
the mean share of drifted features; writes ``benchmarks/results/drift_detection.json``.

    .venv/bin/python benchmarks/drift_detection.py [--seeds 10 --window 300]
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
from waferflow.monitoring.features import feature_frame
from waferflow.monitoring.scenarios import SCENARIOS, stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--reference", type=int, default=1000)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/drift_detection.json"))
    args = ap.parse_args()
    cfg = load_params(args.params).drift
    started = time.perf_counter()
    reference = feature_frame(r.die_grid for r in stream("unshifted", args.reference, seed=0))
    rows = []
    for seed in tqdm(range(1, args.seeds + 1), desc="seeds"):
        for scenario in SCENARIOS:
            current = feature_frame(r.die_grid for r in stream(scenario, args.window, seed=seed))
            s = check_drift(reference, current, cfg).summary
            rows.append({"scenario": scenario, "seed": seed, "retrain_recommended": s["retrain_recommended"],
                         "drifted_share": s["drifted_share"], "reasons": s["reasons"]})
    table = {}
    for scenario in SCENARIOS:
        mine = [r for r in rows if r["scenario"] == scenario]
        table[scenario] = {"alarm_rate": float(np.mean([r["retrain_recommended"] for r in mine])),
                           "mean_drifted_share": round(float(np.mean([r["drifted_share"] for r in mine])), 3),
                           "windows": len(mine)}
    print("| scenario | windows | alarm rate | mean share of drifted features |")
    print("| --- | --- | --- | --- |")
    for scenario, t in table.items():
        kind = "false alarms" if scenario == "unshifted" else "detected"
        print(f"| {scenario} | {t['windows']} | {t['alarm_rate']:.0%} {kind} | {t['mean_drifted_share']:.2f} |")
    seconds = time.perf_counter() - started
    print(f"{len(rows)} windows of {args.window} wafers against {args.reference} in {seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "drift": cfg.model_dump(),
                                    "summary": table, "rows": rows, "seconds": round(seconds, 1)}, indent=1))


if __name__ == "__main__":
    main()
