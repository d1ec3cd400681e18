"""Loc settings of the generator read through the pattern trees on the real dev lots (issue #15,
stop 38): one class redrawn, everything else held still.

The patterns stage's trees fit on own maps (``patterns.own_maps``, 3 000 a class a draw); this study
takes the first draw's 27 000 (``draws`` 1: the unit it was measured on, stop 38). This
script draws those maps once with the default generator, takes their pattern features as the
stage does (each grid resized to the model input and back), then, for each variant (overrides of
the ``loc_*`` settings of ``synth.generator``) and each ``--draws`` seed, redraws **only the Loc
maps** — same lots, die layouts and map indices; the seed only changes the draw inside each map —
refits the stage's trees (``patterns`` parameters, 5 bags) and scores the real **dev** lots. Holding
the other 24 000 maps still takes the other classes' draw out of the comparison; the ``same``
variant redraws the Loc maps with the default settings, which is the spread a redraw alone makes.
The real test lots are never scored here (``benchmarks/sim_to_real.py`` does, after the choice).

    .venv/bin/python benchmarks/loc_variants.py [--variants same,rim_dense] [--draws 7,8]

Writes ``benchmarks/results/loc_variants.json``. One fit takes ~3.5 min on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from feature_classifier import real_frame, scores
from waferflow.classes import CLASSES
from waferflow.config import load_params
from waferflow.data.records import grid_from_row
from waferflow.data.resize import resize_grid
from waferflow.patterns.features import grid_features
from waferflow.patterns.own_maps import own_dataset_config, own_map_features
from waferflow.patterns.trees import fit_trees
from waferflow.synth.dataset import _per_class
from waferflow.synth.generator import GeneratorConfig, WaferGenerator

PROJECT = Path(__file__).resolve().parents[1]
CLASS = "Loc"
LOC_SETTINGS = ("loc_center_reach", "loc_density_range", "loc_elongation")
DEFAULT_LOC = {k: getattr(GeneratorConfig(), k) for k in LOC_SETTINGS}  # the generator's defaults
VARIANTS = {  # overrides of the Loc settings
    "same": {},
    "dense": {"loc_density_range": (0.65, 1.0)},
    "rim": {"loc_center_reach": 0.95},
    "round": {"loc_elongation": 0.4},
    "rim_dense": {"loc_center_reach": 0.95, "loc_density_range": (0.65, 1.0)},
    "rim_dense_elongated": {"loc_center_reach": 0.95, "loc_density_range": (0.65, 1.0), "loc_elongation": 1.2},
}


def dev_features(real: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pattern features and classes of the real dev lots, each grid resized to the model input and back."""
    frame, info = real_frame(real, "dev")
    grids = [grid_from_row(row) for _, row in frame.iterrows()]
    x = grid_features([resize_grid(g, size) for g in grids], [g.shape for g in grids], True, "dev lots", n_jobs=-1)
    return x, np.array([CLASSES.index(c) for c in frame["label"]])


def redrawn_class(params, overrides: dict, draw: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Features of the own maps of ``CLASS`` only, drawn with generator ``overrides`` and map seed
    ``draw``, on the lots and layouts of the stage's own maps (``generate_dataset``'s placement)."""
    own = params.patterns.own_maps
    cfg = own_dataset_config(params.synth, own.model_copy(update={"generator": {**DEFAULT_LOC, **overrides}}))
    gen = WaferGenerator(seed=draw, config=cfg.generator, layout_seed=cfg.seed)
    labels = [c for c, n in _per_class(cfg.labeled_per_class).items() for _ in range(n)]
    order = np.random.default_rng(cfg.seed).permutation(len(labels))
    layouts = [gen.layout(f"P{i:04d}", i) for i in range(cfg.n_products)]
    grids, shapes = [], []
    for pos, idx in enumerate(order):
        if labels[idx] == CLASS:
            lot = pos // cfg.wafers_per_lot
            layout = layouts[int(np.random.default_rng([cfg.seed, 0, lot]).integers(len(layouts)))]
            grid = gen.make(CLASS, index=int(idx), layout=layout).die_grid
            grids.append(resize_grid(grid, size))
            shapes.append(grid.shape)
    x = grid_features(grids, shapes, True, f"{CLASS} maps, draw {draw}", n_jobs=-1)
    return x, np.full(len(x), CLASSES.index(CLASS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="same,rim_dense", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--draws", default="7,8", help="map seeds of the redrawn class (7: the stage's own maps)")
    ap.add_argument("--real", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=PROJECT / "benchmarks/results/loc_variants.json")
    args = ap.parse_args()
    started = time.perf_counter()
    params = load_params(PROJECT / "params.yaml")
    size = tuple(params.preprocess.image_size)
    dev_x, dev_y = dev_features(args.real, size)
    # the stage's first draw (3 000 a class, seed 7) with one class redrawn: the study's unit
    own = params.patterns.own_maps.model_copy(update={"generator": DEFAULT_LOC, "draws": 1})
    x, y = own_map_features(params.synth, own, size, progress=True, n_jobs=-1)
    keep = y != CLASSES.index(CLASS)
    result: dict = {"class": CLASS, "own_maps": own.model_dump(), "runs": []}
    for variant in args.variants.split(","):
        for draw in (int(d) for d in args.draws.split(",")):
            t0 = time.perf_counter()
            loc_x, loc_y = redrawn_class(params, VARIANTS[variant], draw, size)
            trees = fit_trees(np.concatenate([x[keep], loc_x]), np.concatenate([y[keep], loc_y]), params.patterns)
            run = {"variant": variant, "overrides": VARIANTS[variant], "draw": draw}
            run["real_dev"] = scores(dev_y, trees.predict(dev_x))
            run["seconds"] = round(time.perf_counter() - t0, 1)
            result["runs"].append(run)
            dev = run["real_dev"]
            print(f"{variant} draw {draw}: dev macro-F1 {dev['macro_f1']}, recall {dev['recall']}")
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
