"""Sim-to-real probe (issue #15): does a classifier on hand-made wafer features, trained on
generated maps only, transfer to real WM-811K maps better or worse than the U-Net?

WM-811K's own paper (Wu et al., IEEE TSM 2015) classifies on density, Radon and geometry
features. Features describe a pattern by where and how its fails lie, not by pixel texture, so
a generator's texture mismatch might matter less to them. This script trains scikit-learn's
``HistGradientBoostingClassifier`` (class-balanced) on features of freshly generated maps (the
default generator, ``--per-class`` maps a class, seed 42) and scores the generated test wafers
and the real maps' **dev** lots (``waferflow.evaluation.real_maps``); ``--test`` also scores the
test lots (report only: nothing here is chosen on them).

Features: the 83 of ``waferflow.patterns.features`` (the pipeline's patterns stage fits the same
trees on them), on each wafer's own grid (any size), or with ``--size`` on the grid resized to
the model input.

    .venv/bin/python benchmarks/feature_classifier.py [--per-class 600] [--models hgb,hgb_small]
        [--blend-steps 800] [--test]

Writes ``benchmarks/results/feature_classifier.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from waferflow.classes import CLASSES
from waferflow.data.records import grid_from_row
from waferflow.evaluation.real_maps import load_real_frame
from waferflow.patterns.config import PatternsConfig
from waferflow.patterns.features import grid_features
from waferflow.patterns.trees import make_trees
from waferflow.synth.dataset import DatasetConfig, generate_dataset

MODELS = {  # class-balanced: the generated classes are balanced, real mixes are not
    "hgb": lambda: HistGradientBoostingClassifier(
        max_iter=400, learning_rate=0.08, class_weight="balanced", random_state=0
    ),
    "hgb_small": lambda: make_trees(PatternsConfig()),  # what the pipeline's patterns stage fits
    "extra_trees": lambda: ExtraTreesClassifier(
        n_estimators=500, min_samples_leaf=2, class_weight="balanced", n_jobs=-1, random_state=0
    ),
}


SIZE: tuple[int, int] | None = None  # --size: features of the grids resized to the model input


def features(grids, desc: str) -> np.ndarray:
    if SIZE is not None:
        from waferflow.data.resize import resize_grid

        grids = [resize_grid(g, SIZE) for g in grids]
    return grid_features(grids, progress=True, desc=desc)


def real_frame(real: Path, part: str | None = None):
    """The real labeled maps of ``part`` (dev or test lots; None: both) and their source info, or
    exit with the reason none were found (the benchmarks that need them)."""
    frame, info = load_real_frame(real, part)
    if frame is None:
        raise SystemExit(f"no real labeled maps: {info['reason']} (pass --real DIR)")
    return frame, info


def record_features(records, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and class indices of generated wafer records."""
    return features([r.die_grid for r in records], desc), np.array([CLASSES.index(r.label) for r in records])


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    present = sorted(set(y_true))
    return {
        "wafers": int(len(y_true)),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=present, average="macro")), 4),
        "accuracy": round(float((y_true == y_pred).mean()), 4),
        "recall": {
            CLASSES[k]: round(float(v), 3)
            for k, v in zip(present, recall_score(y_true, y_pred, labels=present, average=None))
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=range(len(CLASSES))).tolist(),  # rows: true
    }


def blend(args, data, features_model, test_x, test_y, real, real_grids) -> dict:
    """A small U-Net (``quickfit.SMALL_MODEL``, ``--blend-steps`` steps at 64 x 64) on the same
    generated maps, and the mean of its class probabilities with the feature model's at weights
    0 .. 1 (weight = the U-Net's share). The weight is *not* chosen here: every one is reported,
    and the generated test split says which one a generated-only choice would take."""
    from waferflow.data.arrays import WaferArrays
    from waferflow.data.records import records_to_table
    from waferflow.data.resize import resize_grid
    from waferflow.data.split import resize_frame
    from waferflow.models.predictor import WaferPredictor
    from waferflow.quickfit import fit_quick

    size = (64, 64)
    train = WaferArrays.from_frame(resize_frame(records_to_table(data["labeled"]).to_pandas(), size))
    t0 = time.perf_counter()
    predictor = WaferPredictor(fit_quick(train, steps=args.blend_steps, seed=0, batch_size=64)).eval()
    fit_seconds = round(time.perf_counter() - t0, 1)

    def unet(grids):
        return predictor.predict(np.stack([resize_grid(g, size) for g in grids]))[0]

    parts = {"generated_test": (unet([r.die_grid for r in data["test"]]), features_model.predict_proba(test_x), test_y)}
    for part, got in real.items():
        if isinstance(got, tuple):
            parts[f"real_{part}"] = (unet(real_grids[part]), features_model.predict_proba(got[0]), got[1])
    out = {"unet_steps": args.blend_steps, "unet_fit_seconds": fit_seconds, "by_weight": {}}
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        out["by_weight"][str(w)] = {
            name: scores(y, (w * pu + (1 - w) * pf).argmax(axis=1)) for name, (pu, pf, y) in parts.items()
        }
        print(f"U-Net weight {w}:", {n: v["macro_f1"] for n, v in out["by_weight"][str(w)].items()}, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--real", type=Path, default=Path("../shared/data"))
    ap.add_argument("--models", default="hgb", help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--blend-steps", type=int, default=0, help="also blend with a small U-Net of this many steps")
    ap.add_argument("--test", action="store_true", help="also score the real test lots (report only)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/feature_classifier.json"))
    ap.add_argument("--size", type=int, default=0, help="features of grids resized to SIZE x SIZE (0: own size)")
    args = ap.parse_args()
    global SIZE
    SIZE = (args.size, args.size) if args.size else None
    started = time.perf_counter()
    cfg = DatasetConfig(labeled_per_class=args.per_class, unlabeled_count=0, test_per_class=100)
    data = generate_dataset(cfg, progress=True)
    train_x, train_y = record_features(data["labeled"], "features: generated train")
    test_x, test_y = record_features(data["test"], "features: generated test")
    real, real_grids = {}, {}
    for part in ("dev", "test") if args.test else ("dev",):
        frame, info = load_real_frame(args.real, part)
        if frame is None:
            real[part] = info
            continue
        real_grids[part] = [grid_from_row(row) for _, row in frame.iterrows()]
        x = features(real_grids[part], f"features: real {part} lots")
        real[part] = (x, np.array([CLASSES.index(c) for c in frame["label"]]))
    result = {"per_class": args.per_class, "features": int(train_x.shape[1]), "models": {}}
    for name in args.models.split(","):
        model = MODELS[name]()
        t0 = time.perf_counter()
        model.fit(train_x, train_y)
        out = {
            "fit_seconds": round(time.perf_counter() - t0, 1),
            "generated_test": scores(test_y, model.predict(test_x)),
        }
        for part, got in real.items():
            out[f"real_{part}"] = scores(got[1], model.predict(got[0])) if isinstance(got, tuple) else got
        result["models"][name] = out
        print(name, {k: v["macro_f1"] for k, v in out.items() if isinstance(v, dict) and "macro_f1" in v}, flush=True)
    if args.blend_steps:
        result["blend"] = blend(args, data, model, test_x, test_y, real, real_grids)
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
