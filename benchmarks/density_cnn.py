"""A small CNN on a texture-free fail-density picture of each wafer, beside the U-Net and trees
blend (issue #15, stop 45): does a third, image-based member that cannot see die texture add to
it? (It did; since stop 46 the patterns stage serves it: ``patterns.density_cnn``. This study
fits its own CNNs and weighs them freely; it reads only the U-Net and the trees of ``--patterns``.)

The U-Net reads die codes at 64 x 64 and transfers to real maps worst of the two served models
(0.75 macro-F1 alone on the real dev lots, the trees 0.83): what it learns from generated die
texture (background speckle, die size in pixels) does not hold on WM-811K. This study takes
texture away. Each wafer (the model input, 64 x 64 die codes) becomes four 32 x 32 channels:
the fail density smoothed with a Gaussian of ``--sigma`` pixels and taken over the wafer's own
dies only, the same minus the wafer's own fail rate (a heavy real background reads as 0), the
wafer mask and the radius from the wafer's centre (:mod:`waferflow.patterns.density`). A 6-layer
CNN (widths ``--width`` x 1 / 2 / 4, mean- and max-pooled) is fitted on the
patterns stage's own generated maps (``patterns.own_maps``, first draw: 27 000 maps; ``--draws``), one seed
per ``--seeds``, with the 8 wafer symmetries as augmentation and at test time.

It scores, on the real **dev** lots only (the test lots are never read here):

* each seed's CNN alone, and the mean of the seeds' probabilities;
* three-way blends ``wu x U-Net + wc x CNN + (1 - wu - wc) x trees`` times the served decision
  weights (``patterns.class_weights`` of ``--patterns``), on a grid of ``wu`` and ``wc``
  (``wc = 0``: the blend without the CNN, served until stop 46);
* whether a choice on that grid carries: ``--halvings`` random halvings of the dev lots, the
  best point chosen on one half, its gain over the blend without the CNN on the other;
* the generated test split (``data/processed/test.parquet``) for the CNN alone and each blend;
* when the patterns stage serves a CNN: the served blend against the same blend with this study's
  CNN in its place (``against_served``: macro-F1 and recalls on both splits, the paired gain on
  each half of the same lot halvings; stop 52).

    make pipeline && .venv/bin/python benchmarks/density_cnn.py [--seeds 0,1,2,3] [--epochs 8] [--draws 1]

``--draws 2 --epochs 4`` fits each CNN on two draws of the own maps (54 000, seeds 7 and 8) in the
same optimiser steps as one draw x 8 epochs (stop 47: more distinct maps, not more steps; with
``--lines`` served since stop 51, ``patterns.density_cnn.draws``:
``benchmarks/results/density_cnn_lines_draws2.json``). ``--probs DIR`` keeps the seeds' mean
probabilities of the dev lots and the generated split, to weigh against the served blend.
``--lines`` adds the picture's two channels that keep one-die-wide lines (a finer density and a
line response; stop 48, ``benchmarks/results/density_cnn_lines.json``; served since stop 48).

Writes ``benchmarks/results/density_cnn.json``. On a 2-core machine: ~1 min for the maps, ~1.5 min
for the dev lots' features, ~2.7 min a seed (8 epochs of 210 steps, ~20 s an epoch): 758 s for 4 seeds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from feature_classifier import real_frame
from sim_to_real import add_model_arguments

from waferflow.classes import CLASSES
from waferflow.config import load_params
from waferflow.data.arrays import WaferArrays
from waferflow.data.split import resize_frame
from waferflow.evaluation.metrics import classification_metrics
from waferflow.fileio import write_json
from waferflow.models.predictor import as_predictor
from waferflow.patterns.density import density_picture, fit_density_net, predict_density
from waferflow.patterns.features import original_shapes
from waferflow.patterns.own_maps import own_map_grids
from waferflow.patterns.trees import PatternClassifier
from waferflow.registry.pyfunc import load_weights

PROJECT = Path(__file__).resolve().parents[1]
UNET_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
CNN_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def blend(
    unet: np.ndarray, trees: np.ndarray, cnn: np.ndarray, wu: float, wc: float, factors: np.ndarray
) -> np.ndarray:
    """``wu`` x U-Net + ``wc`` x CNN + the rest x trees, times the decision weights, renormalised."""
    mixed = (wu * unet + wc * cnn + (1 - wu - wc) * trees) * factors
    return mixed / mixed.sum(1, keepdims=True)


def lot_halvings(lots: np.ndarray, halvings: int) -> list[np.ndarray]:
    """``halvings`` fixed random halvings of the dev lots (seed 0): one half's wafer mask each."""
    rng, unique = np.random.default_rng(0), np.unique(lots)
    return [np.isin(lots, rng.choice(unique, len(unique) // 2, replace=False)) for _ in range(halvings)]


def against_served(patterns: PatternClassifier, seen: dict, mean: dict, lots: np.ndarray, halvings: int) -> dict:
    """The served blend (its U-Net, trees, CNN and weights) against the same blend with this
    study's CNN in the served CNN's place: macro-F1 and recalls of both on the dev lots and the
    generated split, and the paired gain on each half of ``halvings`` fixed random halvings of the
    dev lots (the same halvings as above; a gain that holds on most halves is not one lot's luck)."""
    out: dict = {}
    mixed = {}
    for name, part in seen.items():
        row = {}
        for who, cnn in (("served", part["served_cnn"]), ("study", mean[name])):
            mixed[name, who] = patterns.mix(part["unet"], part["trees"], cnn)
            m = classification_metrics(part["y"], mixed[name, who])
            row[who] = {"macro_f1": m["macro_f1"], "recall": {c: m["per_class"][c]["recall"] for c in CLASSES}}
        row["gain"] = round(row["study"]["macro_f1"] - row["served"]["macro_f1"], 4)
        out[name] = row
        print(
            f"{name}: served blend {row['served']['macro_f1']:.4f}, with this CNN {row['study']['macro_f1']:.4f} "
            f"({row['gain']:+.4f}); recall by class, served -> this CNN: "
            + ", ".join(f"{c} {row['served']['recall'][c]:.2f}->{row['study']['recall'][c]:.2f}" for c in CLASSES)
        )
    y, served, study = seen["real_dev"]["y"], mixed["real_dev", "served"], mixed["real_dev", "study"]
    gains = np.array(
        [
            classification_metrics(y[part], study[part])["macro_f1"]
            - classification_metrics(y[part], served[part])["macro_f1"]
            for half in lot_halvings(lots, halvings)
            for part in (half, ~half)
        ]
    )
    out["half_gains"] = [round(float(g), 4) for g in gains]
    print(
        f"against the served CNN on {len(gains)} halves of the dev lots ({halvings} halvings): gain mean "
        f"{gains.mean():+.4f}, >= 0 in {(gains >= 0).sum()}, lowest {gains.min():+.4f}",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--draws", type=int, default=1, help="own-map draws the CNNs fit on (27 000 maps each)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--sigma", type=float, default=1.5, help="Gaussian of the fail density, in pixels")
    parser.add_argument(
        "--lines", action="store_true", help="two more picture channels that keep one-die-wide lines (stop 48)"
    )
    parser.add_argument("--halvings", type=int, default=20)
    parser.add_argument("--generated", type=Path, default=Path("data/processed/test.parquet"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/density_cnn.json"))
    parser.add_argument(
        "--probs", type=Path, help="also save the seeds' mean CNN probabilities here (real_dev.npy, generated_test.npy)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    params = load_params(PROJECT / "params.yaml")
    patterns = PatternClassifier.from_dir(args.patterns)
    if patterns is None:
        raise SystemExit(f"{args.patterns}: the patterns stage fitted no trees (patterns.enabled is false)")
    if params.patterns.own_maps is None:
        raise SystemExit("patterns.own_maps is null in params.yaml: this study fits on the stage's own maps")
    factors = np.array([patterns.class_weights.get(c, 1.0) for c in CLASSES], np.float32)
    unet_model = as_predictor(load_weights(args.weights))
    frame, info = real_frame(args.real, "dev")
    parts = {
        "real_dev": WaferArrays.from_frame(resize_frame(frame, tuple(args.image_size))),
        "generated_test": WaferArrays.from_parquet(args.generated),
    }
    seen = {}
    for name, a in parts.items():
        seen[name] = {
            "y": a.labels,
            "unet": unet_model.predict(a.grids)[0],
            "trees": patterns.proba(a.grids, original_shapes(a.frame, a.grids), progress=True),
            "picture": density_picture(np.stack(a.grids), args.sigma, lines=args.lines),
            "served_cnn": patterns.proba_density(np.stack(a.grids)),
        }
    own = params.patterns.own_maps.model_copy(update={"draws": args.draws})
    grids, _, own_y = own_map_grids(params.synth, own, tuple(args.image_size), progress=True)
    own_x = density_picture(np.stack(grids), args.sigma, lines=args.lines)
    print(f"{len(own_y)} own maps as density pictures ({time.perf_counter() - started:.0f} s)", flush=True)

    result: dict = {
        "real": info,
        "settings": {k: getattr(args, k) for k in ("seeds", "epochs", "width", "sigma", "draws", "lines")},
        "own_maps": own.model_dump(),
        "served": {"unet_weight": patterns.unet_weight, "class_weights": patterns.class_weights},
        "cnn_alone": [],
    }
    cnn = {name: [] for name in seen}
    for seed in (int(s) for s in args.seeds.split(",")):
        net = fit_density_net(own_x, own_y, seed, args.epochs, args.width)
        row = {"seed": seed}
        for name, part in seen.items():
            cnn[name].append(predict_density(net, part["picture"]))
            row[name] = classification_metrics(part["y"], cnn[name][-1])["macro_f1"]
        result["cnn_alone"].append(row)
        print(
            f"seed {seed}: CNN alone, real dev {row['real_dev']:.4f}, generated test {row['generated_test']:.4f}",
            flush=True,
        )
    mean = {name: np.mean(v, 0) for name, v in cnn.items()}
    if args.probs:
        args.probs.mkdir(parents=True, exist_ok=True)
        for name, p in mean.items():
            np.save(args.probs / f"{name}.npy", p)
    grid = [(wu, wc) for wu in UNET_WEIGHTS for wc in CNN_WEIGHTS]
    dev, gen = seen["real_dev"], seen["generated_test"]
    probs = {g: blend(dev["unet"], dev["trees"], mean["real_dev"], *g, factors) for g in grid}
    served = (patterns.unet_weight, 0.0)  # without the CNN
    if served not in probs:
        probs[served] = blend(dev["unet"], dev["trees"], mean["real_dev"], *served, factors)
    result["blends"] = []
    for g in grid:
        m = classification_metrics(dev["y"], probs[g])
        gm = classification_metrics(gen["y"], blend(gen["unet"], gen["trees"], mean["generated_test"], *g, factors))
        recall = {c: m["per_class"][c]["recall"] for c in CLASSES}
        result["blends"].append(
            {
                "unet_weight": g[0],
                "cnn_weight": g[1],
                "real_dev": m["macro_f1"],
                "recall": recall,
                "generated_test": gm["macro_f1"],
            }
        )
    for wu in UNET_WEIGHTS:
        row = [b for b in result["blends"] if b["unet_weight"] == wu]
        print(
            f"U-Net {wu}: real dev / generated test at CNN "
            + ", ".join(f"{b['cnn_weight']}: {b['real_dev']:.4f} / {b['generated_test']:.4f}" for b in row)
        )

    y, lots = dev["y"], frame["lot_id"].to_numpy()
    halvings = []
    for half in lot_halvings(lots, args.halvings):
        best = max(grid, key=lambda g: classification_metrics(y[half], probs[g][half])["macro_f1"])
        gain = (
            classification_metrics(y[~half], probs[best][~half])["macro_f1"]
            - classification_metrics(y[~half], probs[served][~half])["macro_f1"]
        )
        halvings.append({"chosen": list(best), "gain_other_half": round(gain, 4)})
    gains = np.array([h["gain_other_half"] for h in halvings])
    result["halvings"] = halvings
    result["halving_gain_mean"] = round(float(gains.mean()), 4)
    print(
        f"chosen on half the dev lots, scored on the other ({args.halvings} halvings) against no CNN: "
        f"gain mean {gains.mean():+.4f}, >= 0 in {(gains >= 0).sum()}, lowest {gains.min():+.4f}"
    )
    if patterns.density_session is not None:
        result["against_served"] = against_served(patterns, seen, mean, lots, args.halvings)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.out, result)
    print(f"written {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
