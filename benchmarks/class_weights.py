"""A decision weight on one class of the served blend, chosen on the real dev lots (issue #15, stop 42).

The served class is ``unet_weight`` x U-Net + (1 - it) x pattern trees, both fitted on generated
maps only. On real maps the blend under-calls a class whose generated form is narrower than
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
  also judges.

    make pipeline && .venv/bin/python benchmarks/class_weights.py [--cls Loc] [--chosen 2]

Writes ``benchmarks/results/class_weights.json``; ~1 min on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sim_to_real import add_model_arguments

from waferflow.classes import CLASSES
from waferflow.data.arrays import WaferArrays
from waferflow.data.split import resize_frame
from waferflow.evaluation.intervals import lot_intervals
from waferflow.evaluation.metrics import classification_metrics
from waferflow.evaluation.real_maps import load_real_frame
from waferflow.models.predictor import as_predictor
from waferflow.patterns.features import original_shapes
from waferflow.patterns.trees import PatternClassifier
from waferflow.registry.pyfunc import load_weights


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
    frame, info = load_real_frame(args.real, "dev")
    if frame is None:
        raise SystemExit(f"no real labeled maps: {info['reason']} (pass --real DIR)")
    arrays = WaferArrays.from_frame(resize_frame(frame, tuple(args.image_size)))
    patterns = PatternClassifier.from_dir(args.patterns)
    if patterns is None:
        raise SystemExit(f"{args.patterns}: the patterns stage fitted no trees (patterns.enabled is false)")
    predictor = as_predictor(load_weights(args.weights))
    generated = WaferArrays.from_parquet(args.generated)

    def components(a: WaferArrays) -> tuple[np.ndarray, np.ndarray]:
        """The U-Net's and the trees' probabilities of ``a``'s wafers."""
        return predictor.predict(a.grids)[0], patterns.proba(a.grids, original_shapes(a.frame, a.grids))

    def served(parts: tuple[np.ndarray, np.ndarray], factor: float) -> np.ndarray:
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
    for _ in range(args.halvings):
        chosen_half = np.isin(lots, rng.choice(unique, len(unique) // 2, replace=False))
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
    result = {
        "real": info,
        "cls": args.cls,
        "unet_weight": patterns.unet_weight,
        "sweep": sweep,
        "halvings": halvings,
        "halving_gain_mean": round(float(gains.mean()), 4),
        "chosen": args.chosen,
        "paired_interval": paired,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
