"""How far can the pattern trees go on real maps at all? Real labels as a yardstick (issue #15).

The default model never sees a real label. This benchmark asks what the same 113 pattern
features and the same trees (``waferflow.patterns``, the patterns stage's parameters) reach when
they *are* fitted on real labels, so that the generated-only figure can be read against it: if
trees fitted on real maps score no better than trees fitted on generated maps, the generator is
not what holds the figure down — the features, WM-811K's class boundaries and its label noise are.

Only the real **dev** lots are used, cross-fitted by lot (``StratifiedGroupKFold``: no lot in
both the fit and the score of a fold); every map gets one out-of-fold prediction. The real test
lots are never read. Arms, all scored on the same out-of-fold dev maps:

* ``generated`` — trees fitted on ``--per-class`` generated maps a class (the default generator,
  one seed), as the pipeline fits them;
* ``real <share>`` — trees fitted on that share of each fold's real training lots (a learning
  curve: how many real labels the generated maps are worth);
* ``generated + real`` — trees fitted on both pooled;
* ``mean(generated, real)`` — the mean of the two models' probabilities.

    .venv/bin/python benchmarks/real_label_ceiling.py [--real ../shared/data] [--seeds 42,1]

Writes ``benchmarks/results/real_label_ceiling.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from feature_classifier import features, real_frame, scores
from generator_variants import seed_features, write_result
from sklearn.model_selection import StratifiedGroupKFold
from waferflow.classes import CLASSES
from waferflow.data.records import grid_from_row
from waferflow.patterns.config import PatternsConfig
from waferflow.patterns.trees import fit_trees

FOLDS = 5


def _probabilities(model, x: np.ndarray) -> np.ndarray:
    """(N, 9) class probabilities in CLASSES order, also when a fit saw fewer classes."""
    out = np.zeros((len(x), len(CLASSES)))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def _lot_subset(lots: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A boolean mask of the wafers of ``share`` of the distinct ``lots`` (drawn with ``seed``)."""
    if share >= 1.0:
        return np.ones(len(lots), bool)
    unique = np.unique(lots)
    keep = np.random.default_rng(seed).choice(unique, size=max(1, round(share * len(unique))), replace=False)
    return np.isin(lots, keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=Path("../shared/data"))
    ap.add_argument("--seeds", default="42,1", help="generator seeds (one generated fit each) and fold seeds")
    ap.add_argument("--shares", default="0.25,0.5,1.0", help="shares of each fold's real training lots")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/real_label_ceiling.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    frame, info = real_frame(args.real, "dev")
    x = features([grid_from_row(row) for _, row in frame.iterrows()], "features: real dev lots")
    y = np.array([CLASSES.index(c) for c in frame["label"]])
    lots = frame["lot_id"].to_numpy()
    cfg = PatternsConfig()
    shares = [float(s) for s in args.shares.split(",")]
    result: dict = {"real": info, "folds": FOLDS, "per_class": args.per_class, "runs": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        gen_x, gen_y, _, _ = seed_features(seed, args.per_class, {}, f"seed {seed}")
        generated = _probabilities(fit_trees(gen_x, gen_y, cfg), x)
        oof = {f"real {s:g}": np.zeros((len(y), len(CLASSES))) for s in shares}
        oof["generated + real"] = np.zeros((len(y), len(CLASSES)))
        folds = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
        for k, (fit_idx, score_idx) in enumerate(folds.split(x, y, groups=lots)):
            for s in shares:
                sub = fit_idx[_lot_subset(lots[fit_idx], s, seed * 100 + k)]
                oof[f"real {s:g}"][score_idx] = _probabilities(fit_trees(x[sub], y[sub], cfg), x[score_idx])
            pooled = fit_trees(np.vstack([gen_x, x[fit_idx]]), np.concatenate([gen_y, y[fit_idx]]), cfg)
            oof["generated + real"][score_idx] = _probabilities(pooled, x[score_idx])
            print(f"seed {seed}: fold {k + 1}/{FOLDS} fitted", flush=True)
        arms = {"generated": generated, **oof, "mean(generated, real 1)": (generated + oof["real 1"]) / 2}
        run = {"seed": seed, "arms": {name: scores(y, p.argmax(1)) for name, p in arms.items()}}
        result["runs"].append(run)
        for name, s in run["arms"].items():
            lowest = min(s["recall"].values())
            print(f"seed {seed} {name:<26} dev macro-F1 {s['macro_f1']:.3f}  lowest recall {lowest:.2f}")
    names = list(result["runs"][0]["arms"])
    result["mean_macro_f1"] = {
        n: round(float(np.mean([r["arms"][n]["macro_f1"] for r in result["runs"]])), 4) for n in names
    }
    result["real_fit_wafers_per_fold"] = round(len(y) * (FOLDS - 1) / FOLDS)
    print(f"\n{'arm':<26} real dev macro-F1, out of fold (mean over seeds {args.seeds})")
    for n, v in result["mean_macro_f1"].items():
        print(f"{n:<26} {v:.3f}")
    write_result(result, args.out, started)


if __name__ == "__main__":
    main()
