"""Sim-to-real: the default model, trained on generated maps only, on real WM-811K maps.

Prints one table for the model the pipeline trained (``models/weights.pt`` after ``make
pipeline``, blended with the patterns stage's trees in ``data/patterns`` as the engine serves it;
each component alone is recorded too): macro-F1 and per-class recall on the **real test lots**
(the headline: the fixed lot
split of :mod:`waferflow.evaluation.real_maps`, never looked at while developing), on the real
dev lots, and on the generated test split; then the sim-to-real distance per class (wafer
features, real dev lots vs generated test maps, :mod:`waferflow.evaluation.sim_to_real`) and the
train stage's wall time. Writes ``benchmarks/results/sim_to_real.json``.

    make pipeline && .venv/bin/python benchmarks/sim_to_real.py [--real ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from feature_classifier import real_frame

from waferflow.classes import CLASSES
from waferflow.data.arrays import WaferArrays
from waferflow.data.records import grid_from_row, read_frame
from waferflow.data.split import resize_frame
from waferflow.evaluation.evaluate import evaluate_arrays
from waferflow.evaluation.real_maps import PARTS
from waferflow.evaluation.sim_to_real import gap_table, sim_to_real_gap
from waferflow.patterns.trees import PatternClassifier, served_class
from waferflow.registry.pyfunc import load_weights


def _scores(net, arrays: WaferArrays, patterns, components: dict, name: str, intervals_by: str | None = None) -> dict:
    """The evaluate stage's metrics of the served class (no plots), with its 95 % intervals over
    the ``intervals_by`` groups (lots) when given; each component's in ``components``."""
    report = evaluate_arrays(net, arrays, patterns=patterns, intervals_by=intervals_by)
    if "components" in report:
        components[name] = report["components"]
    return {**report["classification"], **({"intervals": report["intervals"]} if intervals_by else {})}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The real maps, and the pipeline's U-Net and trees that serve them (this script's and
    ``class_weights.py``'s)."""
    parser.add_argument("--real", type=Path, default=Path("../shared/data"))
    parser.add_argument("--weights", type=Path, default=Path("models/weights.pt"))
    parser.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    parser.add_argument("--image-size", type=int, nargs=2, default=(64, 64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sim_to_real.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    frame, info = real_frame(args.real)
    net = load_weights(args.weights)
    patterns = PatternClassifier.from_dir(args.patterns)  # None: disabled, the U-Net alone serves
    components: dict = {}
    rows, results = {}, {"real": info, "weights": str(args.weights), "served": served_class(patterns)}
    for part in ("test", "dev"):
        sub = frame[frame["part"] == part]
        arrays = WaferArrays.from_frame(resize_frame(sub, tuple(args.image_size)))
        results[f"real_{part}"] = _scores(net, arrays, patterns, components, f"real_{part}", "lot_id")
        rows[f"real {part} lots ({len(sub)} maps, {sub['lot_id'].nunique()} lots)"] = results[f"real_{part}"]
    test = WaferArrays.from_parquet("data/processed/test.parquet")
    results["generated_test"] = _scores(net, test, patterns, components, "generated_test")
    results["components"] = components
    rows["generated test split"] = results["generated_test"]
    table = pd.DataFrame(
        {
            name: {
                "macro-F1": r["macro_f1"],
                **{f"recall {c}": r["per_class"][c]["recall"] for c in CLASSES},
                "min recall": min(r["per_class"][c]["recall"] for c in CLASSES if r["per_class"][c]["support"]),
            }
            for name, r in rows.items()
        }
    )
    pd.set_option("display.width", 200)
    print(f"served: {results['served']}")
    print(table.round(3).to_string())
    for name, parts in components.items():
        print(f"  {name}: " + ", ".join(f"{k} alone macro-F1 {v['macro_f1']:.3f}" for k, v in parts.items()))
    print("\n95 % intervals of the served class, whole lots resampled (waferflow.evaluation.intervals):")
    for part in ("test", "dev"):
        iv = results[f"real_{part}"]["intervals"]
        print(
            f"  real {part} lots: macro-F1 {iv['macro_f1'][0]:.3f}-{iv['macro_f1'][1]:.3f}; recall "
            + ", ".join(f"{c} {lo:.2f}-{hi:.2f}" for c, (lo, hi) in iv["recall"].items())
        )

    generated = read_frame("data/generated/test.parquet")
    dev = frame[frame["part"] == "dev"]
    gap = sim_to_real_gap(
        [grid_from_row(r) for r in generated.to_dict("records")],
        generated["label"],
        [grid_from_row(r) for r in dev.to_dict("records")],
        dev["label"],
    )
    results["sim_to_real"] = gap
    print(
        "\nsim-to-real distance per class (wafer features, real dev lots vs generated test maps; "
        "normed Wasserstein, in generated-map std):"
    )
    print(gap_table(gap).round(3).to_string(index=False))
    train = Path("metrics/train.json")
    if train.is_file():
        t = json.loads(train.read_text())
        results["train"] = {k: t.get(k) for k in ("train_seconds", "epochs_trained", "peak_rss_mb")}
        print(
            f"\ntrain stage: {t.get('train_seconds')} s for {t.get('epochs_trained')} epochs "
            f"(metrics/train.json; absolute times differ ~3x between machines of this kind)"
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten {args.out} ({results['seconds']} s); parts: {', '.join(PARTS)}")


if __name__ == "__main__":
    main()
