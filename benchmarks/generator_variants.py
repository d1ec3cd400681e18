"""Generator variants and pattern-feature sets read through the pattern trees (issue #15): which
sampling ranges move the generated maps towards real ones, and which features carry over?

For each variant (overrides of the default ``GeneratorConfig``) and each seed, generates
``--per-class`` maps a class plus the 100-a-class test set, fits the pipeline's pattern trees
(``waferflow.patterns``, the patterns stage's parameters) on them and scores the real **dev**
lots and the generated test set of that seed. The real test lots are never scored here: a
variant is chosen on the dev lots, and the pipeline's test-lot figure comes after the choice
(``benchmarks/sim_to_real.py``). One seed moves the dev figure by about ±0.01, so each variant
runs on several.

``--feature-sets`` fits the trees on groups of ``waferflow.patterns.features`` columns:
``all`` (the pipeline's), ``base`` (the 83 before the hotspot, relative profile and line
features), and ``base+hotspot`` etc.; ``--bags`` compares bagged trees (``patterns.bags``: 5 by default) with
one fit. Every set and bag count sees the same generated maps of a seed.

    .venv/bin/python benchmarks/generator_variants.py [--variants before,default] [--seeds 42,1,2]
        [--feature-sets all,base,base+hotspot,base+profile,base+line] [--bags 5,1]

Writes ``benchmarks/results/generator_variants.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from feature_classifier import features, real_frame, record_features, scores
from waferflow.classes import CLASSES
from waferflow.config import load_params
from waferflow.data.records import grid_from_row
from waferflow.patterns.config import OwnMapsConfig, PatternsConfig
from waferflow.patterns.features import FEATURE_NAMES
from waferflow.patterns.trees import fit_trees
from waferflow.synth.dataset import DatasetConfig, generate_dataset
from waferflow.synth.generator import GeneratorConfig

PROJECT = Path(__file__).resolve().parents[1]
VARIANTS = {  # overrides of the default GeneratorConfig
    "before": {"min_pattern_contrast": 0.0, "background_clump_probability": (0.0, 0.5)},  # the stop-28 default
    "contrast_0.30": {"background_clump_probability": (0.0, 0.5), "min_pattern_contrast": 0.30},
    "contrast_0.30_clumps_0.25": {"min_pattern_contrast": 0.30},
    "default": {},  # contrast >= 0.35, background clumps 0-25 %
    "small_wafers": {"diameter_range": (18, 90)},
    # the pattern trees' own maps of the pipeline (params.yaml patterns.own_maps.generator)
    "trees_own_maps": (load_params(PROJECT / "params.yaml").patterns.own_maps or OwnMapsConfig()).generator,
}

FEATURE_GROUPS = {  # name prefixes of the features added after the first 83 (issue #15, stop 30)
    "hotspot": "hotspot_",
    "profile": "profile_",
    "line": "line_",
}


def feature_columns(spec: str) -> list[int]:
    """Column indices of a feature set: ``all``, or ``base`` plus ``+``-joined FEATURE_GROUPS."""
    if spec == "all":
        return list(range(len(FEATURE_NAMES)))
    head, *groups = spec.split("+")
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if head != "base" or unknown:
        raise SystemExit(f"feature set {spec!r}: 'all', or 'base' plus any of {'+'.join(FEATURE_GROUPS)}")
    prefixes = tuple(FEATURE_GROUPS.values())
    wanted = tuple(FEATURE_GROUPS[g] for g in groups)
    return [i for i, n in enumerate(FEATURE_NAMES) if not n.startswith(prefixes) or n.startswith(wanted)]


def dev_lot_features(real: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pattern features and classes of the real dev lots in ``real``, and what was loaded."""
    frame, info = real_frame(real, "dev")
    x = features([grid_from_row(row) for _, row in frame.iterrows()], "features: real dev lots")
    return x, np.array([CLASSES.index(c) for c in frame["label"]]), info


def seed_features(seed: int, per_class: int, overrides: dict, desc: str) -> tuple[np.ndarray, ...]:
    """Pattern features and classes of one seed's generated train maps (``per_class`` a class) and
    its 100-a-class test maps, with the generator's ``overrides``."""
    cfg = DatasetConfig(
        seed=seed,
        labeled_per_class=per_class,
        unlabeled_count=0,
        test_per_class=100,
        generator=GeneratorConfig(**overrides),
    )
    data = generate_dataset(cfg)
    x, y = record_features(data["labeled"], f"{desc}: generated train")
    test_x, test_y = record_features(data["test"], f"{desc}: generated test")
    return x, y, test_x, test_y


def mean_scores(runs: list[dict]) -> dict:
    """Mean real-dev and generated-test macro-F1 of one configuration's runs (one per seed)."""
    return {
        f"mean_{part}_macro_f1": round(float(np.mean([r[part]["macro_f1"] for r in runs])), 4)
        for part in ("real_dev", "generated_test")
    }


def write_result(result: dict, out: Path, started: float) -> None:
    """``result`` with its run time, as JSON in ``out``."""
    result["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out} ({result['seconds']} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--feature-sets", default="all", help="comma list: all, base, base+hotspot+line, ...")
    ap.add_argument("--bags", default=str(PatternsConfig().bags), help="comma list of patterns.bags values")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--real", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/generator_variants.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    dev_x, dev_y, info = dev_lot_features(args.real)
    result: dict = {"per_class": args.per_class, "real": info, "variants": {}}
    bags = [int(b) for b in args.bags.split(",")]
    default_bags = PatternsConfig().bags
    columns = {spec: feature_columns(spec) for spec in args.feature_sets.split(",")}
    for variant in args.variants.split(","):
        runs: dict[tuple[str, int], list] = {(spec, b): [] for spec in columns for b in bags}
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            x, y, test_x, test_y = seed_features(seed, args.per_class, VARIANTS[variant], f"{variant} seed {seed}")
            for spec, b in runs:
                cols = columns[spec]
                trees = fit_trees(x[:, cols], y, PatternsConfig(bags=b))
                run = {
                    "seed": seed,
                    "real_dev": scores(dev_y, trees.predict(dev_x[:, cols])),
                    "generated_test": scores(test_y, trees.predict(test_x[:, cols])),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                runs[spec, b].append(run)
                print(
                    f"{variant} / {spec} / {b} bags, seed {seed}: real dev {run['real_dev']['macro_f1']:.3f}, "
                    f"generated test {run['generated_test']['macro_f1']:.3f}",
                    flush=True,
                )
        for (spec, b), spec_runs in runs.items():
            name = variant + ("" if spec == "all" else f" / {spec}") + ("" if b == default_bags else f" / {b} bags")
            result["variants"][name] = {
                "overrides": VARIANTS[variant],
                "features": spec,
                "n_features": len(columns[spec]),
                "bags": b,
                **mean_scores(spec_runs),
                "runs": spec_runs,
            }
    print(f"\n{'variant / features':<36} real dev (mean)  generated test (mean)  over seeds {args.seeds}")
    for name, v in result["variants"].items():
        print(f"{name:<36} {v['mean_real_dev_macro_f1']:>15.3f}  {v['mean_generated_test_macro_f1']:>21.3f}")
    write_result(result, args.out, started)


if __name__ == "__main__":
    main()
