"""One class's generator settings read through the pattern trees on the real dev lots (issue #15,
stops 38 and 44): that class redrawn, everything else held still.

The patterns stage's trees fit on own maps (``patterns.own_maps``, 3 000 a class a draw); this study
takes the first draw's 27 000 (``draws`` 1: the unit it was measured on, stop 38). This
script draws those maps once as the stage does (its own generator overrides included), takes their
pattern features as the stage does (each grid resized to the model input and back), then, for
each variant (overrides of ``--cls``'s settings of ``synth.generator``, :data:`SETTINGS`) and each
``--draws`` seed, redraws **only that class's maps** — same lots, die layouts and map indices; the
seed only changes the draw inside each map — refits the stage's trees (``patterns`` parameters,
5 bags) and scores the real **dev** lots: the trees alone and, with the pipeline's U-Net
(``--weights``, when present), the served blend (the ``unet_weight`` and ``class_weights`` of
``--patterns``); with ``--cnn`` the served density CNN (``patterns.density_cnn``) is refitted on
the same maps too, so the served blend is the one the pipeline would give (stop 49: the trees and
the CNN now read the own maps about equally). Holding the other 24 000 maps still takes the
other classes' draw out of the comparison; the ``same`` variant redraws the class with the generator's defaults for its
settings, which is the spread a redraw alone makes. With the pipeline's blend at hand the
generated test split (``--generated``, ``data/processed/test.parquet``) is scored too, trees alone
and served (stop 50: a choice read on the real lots alone cost the generated split 0.016 at stop 49).
The real test lots are never scored here (``benchmarks/sim_to_real.py`` does, after the choice).

    .venv/bin/python benchmarks/class_variants.py [--cls Loc] [--variants same,rim_dense] [--draws 7,8]
    .venv/bin/python benchmarks/class_variants.py --cls Edge-Ring --variants same,thin_dense
    .venv/bin/python benchmarks/class_variants.py --cls Edge-Loc --variants same,thin_long
    .venv/bin/python benchmarks/class_variants.py --cls Edge-Loc --variants same,chord --draws 7 --cnn
    .venv/bin/python benchmarks/class_variants.py --cls Loc --variants rim_dense,dense --draws 7 --cnn

Writes ``benchmarks/results/<class>_variants.json`` (``loc_variants.json``, ``edge-ring_variants.json``,
``edge-loc_variants.json``).
One fit takes ~4 min on a 2-core machine (~14 with ``--cnn``), the shared maps and features ~7 more.
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
from waferflow.patterns.trees import PatternClassifier, fit_trees
from waferflow.synth.dataset import _per_class
from waferflow.synth.generator import GeneratorConfig, WaferGenerator

PROJECT = Path(__file__).resolve().parents[1]
SETTINGS = {  # the generator settings that draw each class studied here
    "Loc": ("loc_center_reach", "loc_density_range", "loc_elongation"),
    "Edge-Ring": ("edge_ring_depth_range", "edge_ring_density_range"),
    "Edge-Loc": ("edge_loc_depth_range", "edge_loc_span_range", "edge_loc_chord_probability"),
}
VARIANTS = {  # overrides of those settings, per class
    "Loc": {
        "same": {},
        "dense": {"loc_density_range": (0.65, 1.0)},
        "rim": {"loc_center_reach": 0.95},
        "round": {"loc_elongation": 0.4},
        "rim_dense": {"loc_center_reach": 0.95, "loc_density_range": (0.65, 1.0)},
        "rim_dense_elongated": {"loc_center_reach": 0.95, "loc_density_range": (0.65, 1.0), "loc_elongation": 1.2},
    },
    "Edge-Ring": {  # WM-811K's rings are 1-2 dies deep and solid at the outermost die (stop 44)
        "same": {},
        "thin": {"edge_ring_depth_range": (1.0, 2.0)},
        "thin_dense": {"edge_ring_depth_range": (0.8, 1.8), "edge_ring_density_range": (0.8, 1.0)},
    },
    "Edge-Loc": {  # WM-811K's Edge-Loc is shallower than the generator's; thin arcs on 1-3 sides (stop 47)
        "same": {},
        "thin_long": {"edge_loc_depth_range": (0.04, 0.2), "edge_loc_span_range": (0.15, 1.2)},
        # large solid half-moons from the rim, which the blend read as Random (stop 49)
        "chord": {"edge_loc_chord_probability": 0.2},
    },
}


def dev_features(real: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pattern features and classes of the real dev lots, each grid resized to the model input and
    back, and the resized grids themselves (the U-Net's input)."""
    frame, info = real_frame(real, "dev")
    grids = [grid_from_row(row) for _, row in frame.iterrows()]
    small = [resize_grid(g, size) for g in grids]
    x = grid_features(small, [g.shape for g in grids], True, "dev lots", n_jobs=-1)
    return x, np.array([CLASSES.index(c) for c in frame["label"]]), np.stack(small)


def class_defaults(cls: str) -> dict:
    """The generator's own defaults of ``cls``'s settings (the ``same`` variant's draw)."""
    return {k: getattr(GeneratorConfig(), k) for k in SETTINGS[cls]}


def redrawn_class(
    params, cls: str, overrides: dict, draw: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, classes and model-input grids of the own maps of ``cls`` only, drawn with the
    stage's generator overrides, the generator's defaults of ``cls``'s settings, then
    ``overrides``, and map seed ``draw``, on the lots and layouts of the stage's own maps
    (``generate_dataset``'s placement)."""
    own = params.patterns.own_maps
    generator = {**own.generator, **class_defaults(cls), **overrides}
    cfg = own_dataset_config(params.synth, own.model_copy(update={"generator": generator}))
    gen = WaferGenerator(seed=draw, config=cfg.generator, layout_seed=cfg.seed)
    labels = [c for c, n in _per_class(cfg.labeled_per_class).items() for _ in range(n)]
    order = np.random.default_rng(cfg.seed).permutation(len(labels))
    layouts = [gen.layout(f"P{i:04d}", i) for i in range(cfg.n_products)]
    grids, shapes = [], []
    for pos, idx in enumerate(order):
        if labels[idx] == cls:
            lot = pos // cfg.wafers_per_lot
            layout = layouts[int(np.random.default_rng([cfg.seed, 0, lot]).integers(len(layouts)))]
            grid = gen.make(cls, index=int(idx), layout=layout).die_grid
            grids.append(resize_grid(grid, size))
            shapes.append(grid.shape)
    x = grid_features(grids, shapes, True, f"{cls} maps, draw {draw}", n_jobs=-1)
    return x, np.full(len(x), CLASSES.index(cls)), np.stack(grids)


def refit_density(params, grids: np.ndarray, y: np.ndarray, *targets: np.ndarray) -> list[np.ndarray]:
    """The served density CNN (``patterns.density_cnn``: seeds, epochs, width, lines) refitted on
    ``grids``, as the patterns stage fits it, in its optimiser steps (the stage fits on
    ``density_cnn.draws`` draws; this study's maps are one draw, so the epochs are that many times
    the served ones); its probabilities of each of ``targets``' grids."""
    from waferflow.patterns.density import density_picture, fit_density_ensemble, predict_ensemble

    cfg = params.patterns.density_cnn
    cfg = cfg.model_copy(update={"epochs": cfg.epochs * params.patterns.density_draws})
    picture = (grids.shape[1] // 2, grids.shape[2] // 2)
    model = fit_density_ensemble(density_picture(grids, cfg.sigma, picture, cfg.lines), y, cfg)
    return [predict_ensemble(model, density_picture(t, cfg.sigma, picture, cfg.lines)) for t in targets]


def generated_split(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Pattern features, classes and model-input grids of the pipeline's generated test split
    (``data/processed/test.parquet``, labeled wafers); None when it is missing."""
    if not path.is_file():
        return None
    from waferflow.data.arrays import WaferArrays
    from waferflow.patterns.features import original_shapes

    split = WaferArrays.from_parquet(path)
    split = split.take(np.flatnonzero(split.labels >= 0))
    x = grid_features(split.grids, original_shapes(split.frame, split.grids), True, "generated test split", n_jobs=-1)
    return x, split.labels, split.grids


def unet_probs(weights: Path, grids: np.ndarray) -> np.ndarray | None:
    """The pipeline's U-Net's probabilities of ``grids``; None when ``weights`` is missing."""
    if not weights.is_file():
        return None
    from waferflow.models.predictor import as_predictor
    from waferflow.registry.pyfunc import load_weights

    return as_predictor(load_weights(weights)).predict(grids)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cls", default="Loc", choices=sorted(VARIANTS))
    ap.add_argument("--variants", default="same,rim_dense", help="comma list of the class's VARIANTS")
    ap.add_argument("--draws", default="7,8", help="map seeds of the redrawn class (7: the stage's own maps)")
    ap.add_argument("--real", type=Path, default=Path("../shared/data"))
    ap.add_argument("--weights", type=Path, default=PROJECT / "models/weights.pt", help="the U-Net of the served blend")
    ap.add_argument("--patterns", type=Path, default=PROJECT / "data/patterns", help="the blend's weights")
    ap.add_argument(
        "--cnn", action="store_true", help="refit the served density CNN on the redrawn maps too (~10 min a run)"
    )
    ap.add_argument("--out", type=Path, help="default benchmarks/results/<class>_variants.json")
    ap.add_argument("--probs", type=Path, help="a folder outside the repository for each run's probabilities")
    ap.add_argument(
        "--generated",
        type=Path,
        default=PROJECT / "data/processed/test.parquet",
        help="the generated test split, scored too (stop 50: a choice must not read the real lots alone)",
    )
    args = ap.parse_args()
    unknown = set(args.variants.split(",")) - set(VARIANTS[args.cls])
    if unknown:
        raise SystemExit(f"--variants {sorted(unknown)}: {args.cls} has {', '.join(VARIANTS[args.cls])}")
    out = args.out or PROJECT / f"benchmarks/results/{args.cls.lower()}_variants.json"
    started = time.perf_counter()
    params = load_params(PROJECT / "params.yaml")
    size = tuple(params.preprocess.image_size)
    dev_x, dev_y, dev_grids = dev_features(args.real, size)
    unet = unet_probs(args.weights, dev_grids)
    blend = PatternClassifier.from_dir(args.patterns) if unet is not None else None
    if args.cnn and (blend is None or blend.density_session is None or params.patterns.density_cnn is None):
        raise SystemExit("--cnn: the served blend (--weights, --patterns) has no density CNN to refit")
    # the served density CNN's, if any (with --cnn each run refits its own)
    dev_cnn = blend.proba_density(dev_grids) if blend is not None and not args.cnn else None
    gen = generated_split(args.generated) if blend is not None else None
    if gen is not None:
        gen_x, gen_y, gen_grids = gen
        gen_unet = unet_probs(args.weights, gen_grids)
        gen_cnn = blend.proba_density(gen_grids) if not args.cnn else None
    # the stage's first draw (3 000 a class, seed 7) with one class redrawn: the study's unit
    own = params.patterns.own_maps.model_copy(update={"draws": 1})
    x, y, grids = own_map_features(params.synth, own, size, progress=True, n_jobs=-1, grids=True)
    keep = y != CLASSES.index(args.cls)
    result: dict = {
        "class": args.cls,
        "own_maps": own.model_dump(),
        "defaults": class_defaults(args.cls),
        "density_cnn_refitted": args.cnn,
        "runs": [],
    }
    if blend is not None:
        result["served"] = {
            "unet_weight": blend.unet_weight,
            "density_weight": blend.density_weight,
            "class_weights": blend.class_weights,
        }
    for variant in args.variants.split(","):
        for draw in (int(d) for d in args.draws.split(",")):
            t0 = time.perf_counter()
            cls_x, cls_y, cls_grids = redrawn_class(params, args.cls, VARIANTS[args.cls][variant], draw, size)
            trees = fit_trees(np.concatenate([x[keep], cls_x]), np.concatenate([y[keep], cls_y]), params.patterns)
            run = {"variant": variant, "overrides": VARIANTS[args.cls][variant], "draw": draw}
            tree_probs = trees.predict_proba(dev_x)
            run["real_dev"] = scores(dev_y, tree_probs.argmax(1))
            line = f"{variant} draw {draw}: trees alone dev macro-F1 {run['real_dev']['macro_f1']}"
            if args.cnn:
                cnn, *gen_cnn_list = refit_density(
                    params,
                    np.concatenate([grids[keep], cls_grids]),
                    np.concatenate([y[keep], cls_y]),
                    dev_grids,
                    *([gen_grids] if gen is not None else []),
                )
                gen_cnn = gen_cnn_list[0] if gen_cnn_list else None
                run["real_dev_cnn"] = scores(dev_y, cnn.argmax(1))
                line += f", CNN alone {run['real_dev_cnn']['macro_f1']}"
                if args.probs is not None:  # the trees' and the CNN's dev probabilities, for a later look
                    np.save(args.probs / f"{args.cls}.{variant}.{draw}.npy", np.stack([tree_probs, cnn]))
            else:
                cnn = dev_cnn
            if blend is not None:
                run["real_dev_served"] = scores(dev_y, blend.mix(unet, tree_probs, cnn).argmax(1))
                line += f", served {run['real_dev_served']['macro_f1']}, recall {run['real_dev_served']['recall']}"
            if gen is not None:
                gen_trees = trees.predict_proba(gen_x)
                run["generated"] = scores(gen_y, gen_trees.argmax(1))
                run["generated_served"] = scores(gen_y, blend.mix(gen_unet, gen_trees, gen_cnn).argmax(1))
                line += f"; generated split: trees {run['generated']['macro_f1']}"
                line += f", served {run['generated_served']['macro_f1']}, recall {run['generated_served']['recall']}"
                if args.probs is not None:
                    np.save(args.probs / f"{args.cls}.{variant}.{draw}.generated.npy", np.stack([gen_trees, gen_cnn]))
            run["seconds"] = round(time.perf_counter() - t0, 1)
            result["runs"].append(run)
            print(line, flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
