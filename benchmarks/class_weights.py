"""A decision weight on one class of the served blend, chosen on the real dev lots (issue #15, stop 42).

The served class is ``unet_weight`` x U-Net + (1 - it) x pattern trees, both fitted on generated
maps only (since stop 46 the density CNN takes 0.2 of the trees' share; this script mixes it in
as served). On real maps the blend under-calls a class whose generated form is narrower than
WM-811K's (Loc: dev precision 0.91, recall 0.60 at stop 41). ``patterns.class_weights`` multiplies
the blend by a factor per class and renormalises each wafer's row; this script measures what a
factor on ``--cls`` does, **on the real dev lots only** (the test lots are never scored here;
``benchmarks/sim_to_real.py`` reports them after the choice):

* the dev lots' macro-F1 and the class's precision and recall for each factor of ``--factors``
  (the pipeline's U-Net and trees, whatever ``class_weights`` they were written with);
* how well a choice carries over: ``--halvings`` random halvings of the dev lots, the best factor
  chosen on one half and its gain over factor 1 measured on the other;
* the paired 95 % lot interval of ``--chosen`` against factor 1
  (:func:`~waferflow.evaluation.intervals.lot_intervals` with ``baseline=``);
* what each factor costs on the generated test split (``--generated``), which the promotion gate
  also judges;
* whether weights on more classes would carry (stop 43), on the same halvings: a second class's
  factor on top of ``--chosen`` (each class in turn), and a factor for every class at once
  (coordinate ascent from ``--chosen``, two rounds), each chosen on one half and its gain over
  ``--cls`` x ``--chosen`` alone measured on the other.

    make pipeline && .venv/bin/python benchmarks/class_weights.py [--cls Loc] [--chosen 2]

Writes ``benchmarks/results/class_weights.json``; ~4 min on a 2-core machine (1 for the factor sweep).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from feature_classifier import real_frame
from sim_to_real import add_model_arguments

from waferflow.classes import CLASSES
from waferflow.data.arrays import WaferArrays
from waferflow.data.split import resize_frame
from waferflow.evaluation.intervals import lot_intervals
from waferflow.evaluation.metrics import classification_metrics
from waferflow.models.predictor import as_predictor
from waferflow.patterns.features import original_shapes
from waferflow.patterns.trees import PatternClassifier
from waferflow.registry.pyfunc import load_weights


GRID = (0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0)  # factors tried on the classes beyond ``--cls``


def more_classes(
    y: np.ndarray, blend: np.ndarray, halves: list[np.ndarray], cls: int, chosen: float
) -> dict[str, list[float]]:
    """Would weights on more classes carry? ``blend`` is the served blend without weights; for each
    halving, factors are chosen on ``half`` (ties go to the factor nearest 1) and scored on the
    other half against ``cls`` x ``chosen`` alone. A renormalised row keeps its argmax, so the
    class is ``(blend * factors).argmax``, as :meth:`PatternClassifier.mix` serves it."""
    start = np.ones(len(CLASSES))
    start[cls] = chosen

    def f1(rows: np.ndarray, factors: np.ndarray) -> float:
        return classification_metrics(y[rows], blend[rows] * factors)["macro_f1"]

    def best(rows: np.ndarray, factors: np.ndarray, c: int) -> np.ndarray:
        trials = [np.where(np.arange(len(CLASSES)) == c, factors[c] * g, factors) for g in GRID]
        return max(trials, key=lambda t: (f1(rows, t), -abs(np.log(t[c] / factors[c]))))

    out: dict[str, list[float]] = {}
    for c in (c for c in range(len(CLASSES)) if c != cls):
        out[f"and {CLASSES[c]}"] = [round(f1(~h, best(h, start, c)) - f1(~h, start), 4) for h in halves]
    every = []
    for h in halves:
        factors = start
        for _ in range(2):
            for c in range(len(CLASSES)):
                factors = best(h, factors, c)
        every.append(round(f1(~h, factors) - f1(~h, start), 4))
    out["every class"] = every
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--cls", default="Loc", choices=CLASSES)
    parser.add_argument("--factors", default="1,1.25,1.5,1.75,2,2.25,2.5,3")
    parser.add_argument("--chosen", type=float, default=2.0)
    parser.add_argument("--halvings", type=int, default=20)
    parser.add_argument("--generated", type=Path, default=Path("data/processed/test.parquet"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/class_weights.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    frame, info = real_frame(args.real, "dev")
    arrays = WaferArrays.from_frame(resize_frame(frame, tuple(args.image_size)))
    patterns = PatternClassifier.from_dir(args.patterns)
    if patterns is None:
        raise SystemExit(f"{args.patterns}: the patterns stage fitted no trees (patterns.enabled is false)")
    predictor = as_predictor(load_weights(args.weights))
    generated = WaferArrays.from_parquet(args.generated)

    def components(a: WaferArrays) -> tuple[np.ndarray, ...]:
        """The U-Net's, the trees' (and the served density CNN's) probabilities of ``a``'s wafers."""
        return predictor.predict(a.grids)[0], *patterns.components(a.grids, original_shapes(a.frame, a.grids)).values()

    def served(parts: tuple[np.ndarray, ...], factor: float) -> np.ndarray:
        """The engine's blend (probabilities) with ``{cls: factor}`` as its only decision weight."""
        meta = {**patterns.meta, "class_weights": {args.cls: factor}}
        return PatternClassifier(patterns.path, meta).mix(*parts)

    real_parts, generated_parts = components(arrays), components(generated)
    y, lots = arrays.labels, arrays.frame["lot_id"].to_numpy()
    factors = sorted({float(f) for f in args.factors.split(",")} | {1.0, args.chosen})
    preds = {f: served(real_parts, f) for f in factors}
    sweep = []
    for f in factors:
        m = classification_metrics(y, preds[f])
        g = classification_metrics(generated.labels, served(generated_parts, f))
        sweep.append(
            {
                "factor": f,
                "macro_f1": m["macro_f1"],
                **{n: m["per_class"][args.cls][n] for n in ("precision", "recall")},
                "generated_macro_f1": g["macro_f1"],
                "generated_recall": {c: g["per_class"][c]["recall"] for c in CLASSES},
            }
        )
        print(
            f"{args.cls} x {f:g}: dev macro-F1 {m['macro_f1']:.4f}, {args.cls} precision "
            f"{sweep[-1]['precision']:.3f} recall {sweep[-1]['recall']:.3f}; generated test split macro-F1 "
            f"{g['macro_f1']:.4f}, lowest recall {min(sweep[-1]['generated_recall'].items(), key=lambda kv: kv[1])}"
        )

    def macro_f1(rows: np.ndarray, f: float) -> float:
        return classification_metrics(y[rows], preds[f][rows])["macro_f1"]

    rng, unique, halvings = np.random.default_rng(0), np.unique(lots), []
    halves = [np.isin(lots, rng.choice(unique, len(unique) // 2, replace=False)) for _ in range(args.halvings)]
    for chosen_half in halves:
        best = max(factors, key=lambda f: macro_f1(chosen_half, f))
        gain = macro_f1(~chosen_half, best) - macro_f1(~chosen_half, 1.0)
        halvings.append({"chosen": best, "gain_other_half": round(gain, 4)})
    gains = np.array([h["gain_other_half"] for h in halvings])
    print(
        f"chosen on half the lots, scored on the other ({args.halvings} halvings): factors "
        f"{[h['chosen'] for h in halvings]}, gain mean {gains.mean():+.4f}, >= 0 in {(gains >= 0).sum()}"
    )
    paired = lot_intervals(y, preds[args.chosen].argmax(1), lots, baseline=preds[1.0].argmax(1))
    print(
        f"{args.cls} x {args.chosen:g} - x 1, 95 % lot interval: macro-F1 {paired['macro_f1']}, "
        f"{args.cls} recall {paired['recall'][args.cls]}"
    )
    more = more_classes(y, preds[1.0], halves, CLASSES.index(args.cls), args.chosen)
    for name, other_half in more.items():
        g = np.array(other_half)
        print(f"{name}: gain over {args.cls} x {args.chosen:g} alone, mean {g.mean():+.4f}, >= 0 in {(g >= 0).sum()}")
    result = {
        "real": info,
        "cls": args.cls,
        "unet_weight": patterns.unet_weight,
        "sweep": sweep,
        "halvings": halvings,
        "halving_gain_mean": round(float(gains.mean()), 4),
        "chosen": args.chosen,
        "paired_interval": paired,
        "more_classes": {name: {"gain_other_half": g, "mean": round(float(np.mean(g)), 4)} for name, g in more.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
