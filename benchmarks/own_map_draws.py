"""How many draws of their own generated maps the pattern trees fit on, read on the real dev lots
(issue #15, stop 40).

The patterns stage draws ``patterns.own_maps.per_class`` maps a class ``draws`` times, draw ``k``
with seed ``seed + k`` (each draw its own die layouts and lots). This script takes the features
of every draw once, as the stage does (each grid resized to the model input and back), then fits
the stage's trees (``patterns`` parameters) on each draw alone and on all of them together, and
scores the real **dev** lots with each. The real test lots are never scored here
(``benchmarks/sim_to_real.py`` does, after the choice).

    .venv/bin/python benchmarks/own_map_draws.py [--draws 2] [--per-class 3000]

Writes ``benchmarks/results/own_map_draws.json``. On a 2-core machine at 3 000 a class: ~6 min of
features a draw, ~3.5 min a fit on one draw, ~5 min on two.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from feature_classifier import scores
from class_variants import dev_features
from waferflow.config import load_params
from waferflow.patterns.own_maps import own_map_features
from waferflow.patterns.trees import fit_trees

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=None, help="draws to compare (default: params.yaml's)")
    ap.add_argument("--per-class", type=int, default=None, help="maps a class a draw (default: params.yaml's)")
    ap.add_argument("--real", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=PROJECT / "benchmarks/results/own_map_draws.json")
    args = ap.parse_args()
    started = time.perf_counter()
    params = load_params(PROJECT / "params.yaml")
    own = params.patterns.own_maps
    if own is None:
        raise SystemExit("patterns.own_maps is null in params.yaml: the trees fit on the training split")
    draws = args.draws or own.draws
    if draws < 2:
        raise SystemExit(f"--draws {draws}: need >= 2 draws to compare them")
    per_class = args.per_class or own.per_class
    size = tuple(params.preprocess.image_size)
    dev_x, dev_y, _ = dev_features(args.real, size)
    parts = []
    for k in range(draws):
        one = own.model_copy(update={"seed": own.seed + k, "draws": 1, "per_class": per_class})
        parts.append(own_map_features(params.synth, one, size, progress=True, n_jobs=-1))
    fits = {f"draw {k} (seed {own.seed + k})": [k] for k in range(draws)}
    fits[f"all {draws} draws"] = list(range(draws))
    result: dict = {"own_maps": own.model_dump() | {"per_class": per_class, "draws": draws}, "runs": []}
    for name, ks in fits.items():
        t0 = time.perf_counter()
        x = np.concatenate([parts[k][0] for k in ks])
        y = np.concatenate([parts[k][1] for k in ks])
        trees = fit_trees(x, y, params.patterns)
        run = {"fit": name, "maps": int(len(y)), "real_dev": scores(dev_y, trees.predict(dev_x))}
        run["seconds"] = round(time.perf_counter() - t0, 1)
        result["runs"].append(run)
        dev = run["real_dev"]
        print(f"{name}, {len(y)} maps: dev macro-F1 {dev['macro_f1']}, recall {dev['recall']}", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"written {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
