"""Which classifier on the pattern features transfers best to real maps (issue #15)?

The patterns stage fits bagged, class-balanced gradient-boosted trees on the 113 features of
``waferflow.patterns.features``. This benchmark fits other classifier families on the same
features of the same generated maps (``--per-class`` a class, the default generator, each seed of
``--seeds``) and scores the real **dev** lots and each seed's generated test maps; the pairs
``trees+<model>`` average the two probabilities. As in ``generator_variants.py``, the real test
lots are never scored here: a choice is made on the dev lots, and one seed moves the dev figure
by about ±0.01.

    .venv/bin/python benchmarks/pattern_classifiers.py [--models trees,random_forest,...] [--seeds 42,1,2]

Writes ``benchmarks/results/pattern_classifiers.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from feature_classifier import MODELS as FEATURE_MODELS
from feature_classifier import scores
from generator_variants import dev_lot_features, mean_scores, seed_features, write_result
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer
from waferflow.patterns.config import PatternsConfig
from waferflow.patterns.trees import make_trees


def _gaussianised(model):
    """``model`` on the features mapped to normal quantiles (they span orders of magnitude)."""
    return make_pipeline(QuantileTransformer(output_distribution="normal", random_state=0), model)


MODELS = {  # all class-balanced or on balanced generated classes
    "trees": FEATURE_MODELS["hgb_small"],  # the patterns stage's
    "trees_leaf100": lambda: make_trees(PatternsConfig(min_samples_leaf=100)),
    "trees_leaf7": lambda: make_trees(PatternsConfig(max_leaf_nodes=7)),
    "trees_slow": lambda: make_trees(PatternsConfig(learning_rate=0.04, max_iter=400)),
    "random_forest": lambda: RandomForestClassifier(
        500, min_samples_leaf=2, class_weight="balanced", n_jobs=-1, random_state=0
    ),
    "extra_trees": FEATURE_MODELS["extra_trees"],
    "logistic": lambda: _gaussianised(LogisticRegression(max_iter=2000, class_weight="balanced")),
    "mlp": lambda: _gaussianised(
        MLPClassifier((256, 128), alpha=1e-3, max_iter=300, early_stopping=True, random_state=0)
    ),
}

DEFAULT_MODELS = "trees,trees_leaf100,random_forest,extra_trees,logistic,mlp"  # what the results JSON holds


def _scored(dev_y, dev_p, test_y, test_p) -> dict:
    """The real dev lots' and the generated test maps' scores of the most probable classes."""
    return {"real_dev": scores(dev_y, dev_p.argmax(1)), "generated_test": scores(test_y, test_p.argmax(1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--real", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/pattern_classifiers.json"))
    args = ap.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}: choose from {', '.join(MODELS)}")
    started = time.perf_counter()
    dev_x, dev_y, info = dev_lot_features(args.real)
    runs: dict[str, list] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        x, y, test_x, test_y = seed_features(seed, args.per_class, {}, f"seed {seed}")
        probs = {}
        for name in names:
            t0 = time.perf_counter()
            model = MODELS[name]().fit(x, y)
            probs[name] = (model.predict_proba(dev_x), model.predict_proba(test_x))
            fit_seconds = round(time.perf_counter() - t0, 1)
            run = _scored(dev_y, probs[name][0], test_y, probs[name][1])
            runs.setdefault(name, []).append({"seed": seed, "fit_seconds": fit_seconds, **run})
        if "trees" in probs:  # the pipeline's trees averaged with each other family
            for name in names:
                if name == "trees":
                    continue
                dev_p, test_p = ((a + b) / 2 for a, b in zip(probs["trees"], probs[name]))
                runs.setdefault(f"trees+{name}", []).append({"seed": seed, **_scored(dev_y, dev_p, test_y, test_p)})
        for name, model_runs in runs.items():
            r = model_runs[-1]
            print(
                f"seed {seed} {name:<28} real dev {r['real_dev']['macro_f1']:.3f}  "
                f"generated test {r['generated_test']['macro_f1']:.3f}",
                flush=True,
            )
    result = {"per_class": args.per_class, "seeds": args.seeds, "real": info, "models": {}}
    print(f"\n{'model':<28} real dev (per seed; mean)        generated test (mean)")
    for name, model_runs in runs.items():
        means = result["models"][name] = {**mean_scores(model_runs), "runs": model_runs}
        per_seed = " / ".join(f"{r['real_dev']['macro_f1']:.3f}" for r in model_runs)
        print(
            f"{name:<28} {per_seed}; {means['mean_real_dev_macro_f1']:.3f}   "
            f"{means['mean_generated_test_macro_f1']:.3f}"
        )
    write_result(result, args.out, started)


if __name__ == "__main__":
    main()
