"""Does the U-Net gain on real maps from the pattern trees' own-map settings? (issue #15)

The pattern trees gained from more distinct generated maps (600 -> 3 000 a class) and from Loc
clusters out to the rim (``patterns.own_maps``); the train stage's U-Net still learns from the
split's 1 200 maps a class drawn with the default generator. This benchmark trains the U-Net both
ways at the **same optimiser steps** and scores each on the real lots:

* ``default``: the pipeline's own data (``synth`` as in params.yaml), ``train.max_epochs``;
* ``own``: ``synth`` with ``patterns.own_maps.per_class`` maps a class and its generator
  overrides, as many epochs as give the default's optimiser steps (rounded);

each through the pipeline's stages ``generate`` -> ``ingest`` -> ``validate`` -> ``split`` into a
temporary folder (``validate`` becomes a copy where great-expectations is missing, as in
``gpu_check.py``), then the train stage's ``fit()`` and the temperature on that data's val split.
Per fit and real part: the U-Net's macro-F1 and recalls alone, and blended with the pipeline's
pattern trees (``--patterns``, default ``data/patterns``) at each ``--weights`` U-Net share. With
``--probs FILE.npz`` the U-Net's class probabilities and the real labels are saved for further
blends: they derive from real maps, so keep that file outside the repository.

Choose on the dev lots; the test lots are for reporting once. Meant for a GPU (``--accelerator gpu``:
71 s a default fit on one H100); on the 2-core CPU a fit takes ~20 min. Where MLflow is not
installed (the lent GPU machine), ``--no-mlflow`` lets fit() log to CSV instead.

    PYTHONPATH=src python3 benchmarks/unet_maps.py --real ../shared/data --accelerator gpu \\
        [--variants default,own] [--seeds 42,1] [--weights 0.3,0.5] [--out benchmarks/results/unet_maps.json]
    # on the CPU: only the own maps refitted, the pipeline's U-Net (make pipeline) as the default at seed 42
    PYTHONPATH=src .venv/bin/python benchmarks/unet_maps.py --real ../shared/data --variants own \
        --pipeline-unet models/weights.pt
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from feature_classifier import scores
from gpu_check import load_net, make_data
from waferflow.config import load_params
from waferflow.data.arrays import WaferArrays
from waferflow.evaluation.real_maps import PARTS, real_arrays
from waferflow.models.predictor import WaferPredictor
from waferflow.patterns.features import original_shapes
from waferflow.patterns.own_maps import own_dataset_config
from waferflow.patterns.trees import PatternClassifier
from waferflow.registry.tracking import MlflowConfig
from waferflow.training import trainer as trainer_mod
from waferflow.training.config import TrainConfig


def variant_params(params, variant: str):
    """``params`` with ``synth`` as the variant draws its maps."""
    if variant == "default":
        return params
    if variant != "own":
        raise ValueError(f"unknown variant {variant!r}: default or own")
    own = params.patterns.own_maps
    generator = own_dataset_config(params.synth, own).generator  # the trees' generator overrides, validated
    synth = params.synth.model_copy(update={"labeled_per_class": own.per_class, "generator": generator})
    return params.model_copy(update={"synth": synth})


def without_mlflow() -> None:
    """fit() on a machine without MLflow: a CSV logger in place of MLflow's (same training)."""
    from lightning.pytorch.loggers import CSVLogger

    class Logger(CSVLogger):
        run_id = None

        def __init__(self, experiment_name, tracking_uri, run_name, tags):
            super().__init__(save_dir=tempfile.mkdtemp(), name=run_name)

    trainer_mod.MLFlowLogger = Logger
    trainer_mod.configure_mlflow = lambda cfg, root: None
    trainer_mod.resolved_tracking_uri = lambda cfg, root: ""


def train_wafers(root: Path) -> int:
    return len(WaferArrays.from_parquet(root / "data/processed/train.parquet").labels)


def blend_scores(probs: dict, trees: dict | None, real: dict, weights: list[float]) -> dict:
    """The U-Net alone and its two-way blends with the trees at ``weights`` (no decision weights,
    no density CNN): a study of the U-Net's maps, not the served class."""
    out = {}
    for part in PARTS:
        y = real[part].labels
        row = {"unet": scores(y, probs[part].argmax(1))}
        for w in weights if trees is not None else ():
            row[f"blend_{w}"] = scores(y, (w * probs[part] + (1 - w) * trees[part]).argmax(1))
        out[part] = {k: {m: v for m, v in s.items() if m != "confusion_matrix"} for k, s in row.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--real", type=Path, required=True, help="folder with labeled real maps")
    parser.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    parser.add_argument("--variants", default="default,own")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--weights", default="0.3,0.5", help="U-Net shares of the blends scored")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument(
        "--pipeline-unet",
        type=Path,
        default=None,
        help="also score this train-stage U-Net (models/weights.pt): the default variant at seed 42, not refitted",
    )
    parser.add_argument("--probs", type=Path, default=None, help="npz of real labels and U-Net probabilities")
    parser.add_argument("--budget-s", type=float, default=1e9, help="no new fit starts past this wall time")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/unet_maps.json"))
    args = parser.parse_args()
    if args.no_mlflow:
        without_mlflow()
    started = time.perf_counter()
    params = load_params(args.params)
    size = tuple(params.preprocess.image_size)
    real, _ = real_arrays(args.real, size)
    if real is None:
        raise SystemExit(f"no labeled real maps under {args.real}")
    weights = [float(w) for w in args.weights.split(",")]
    trees = None
    if args.patterns.is_dir():
        classifier = PatternClassifier.from_dir(args.patterns)
        trees = {p: classifier.proba(real[p].grids, original_shapes(real[p].frame, real[p].grids)) for p in PARTS}
    results = {"params": args.params, "trees": str(args.patterns) if trees else None, "fits": {}}
    if trees is not None:
        results["trees_alone"] = {
            p: {k: v for k, v in scores(real[p].labels, trees[p].argmax(1)).items() if k != "confusion_matrix"}
            for p in PARTS
        }
    saved = {f"labels_{p}": real[p].labels for p in PARTS}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        results["elapsed_s"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        if args.probs is not None:
            np.savez_compressed(args.probs, **saved)

    if args.pipeline_unet is not None:
        from waferflow.registry.pyfunc import load_weights

        probs = {p: load_weights(args.pipeline_unet).predict(real[p].grids)[0] for p in PARTS}
        saved.update({f"pipeline_{p}": probs[p] for p in PARTS})
        scored = blend_scores(probs, trees, real, weights)
        results["fits"]["pipeline"] = {"weights": str(args.pipeline_unet), "real": scored}
        save()
    variants = sorted(args.variants.split(","), key=lambda v: v != "default")  # default first: its steps
    target_steps = None
    if "default" not in variants:  # the train stage's steps, from the pipeline's own split
        target_steps = params.train.max_epochs * math.ceil(train_wafers(Path(".")) / params.train.batch_size)
    for variant in variants:
        vparams = variant_params(params, variant)
        root = Path(tempfile.mkdtemp(prefix=f"unet_maps_{variant}_"))
        data = make_data(vparams, root)
        n_train = train_wafers(root)
        per_epoch = math.ceil(n_train / params.train.batch_size)
        if variant == "default":
            target_steps = params.train.max_epochs * per_epoch  # the default variant's steps
        epochs = max(1, round(target_steps / per_epoch))
        val = WaferArrays.from_parquet(root / "data/processed/val.parquet")
        for seed in (int(s) for s in args.seeds.split(",")):
            name = f"{variant}_s{seed}"
            if time.perf_counter() - started > args.budget_s:
                results["fits"][name] = {"skipped": "past --budget-s"}
                continue
            train = TrainConfig.model_validate(
                {**params.train.model_dump(), "seed": seed, "max_epochs": epochs, "accelerator": args.accelerator}
            )
            summary = trainer_mod.fit(
                params.model,
                train,
                root / "data/processed",
                root / "models" / name,
                MlflowConfig(tracking_uri="sqlite:///mlflow.db", artifact_root="mlruns", experiment="unet_maps"),
                root,
            )
            predictor = WaferPredictor(load_net(summary["checkpoint"]))
            temperature = predictor.calibrate(val.grids, val.labels)
            probs = {p: predictor.predict(real[p].grids)[0] for p in PARTS}
            for p in PARTS:
                saved[f"{name}_{p}"] = probs[p]
            results["fits"][name] = {
                "variant": variant,
                "seed": seed,
                "data": data,
                "train_wafers": n_train,
                "epochs": epochs,
                "optimiser_steps": epochs * per_epoch,
                "train_seconds": summary["train_seconds"],
                "best_val_macro_f1": round(summary["best_val_macro_f1"], 4),
                "temperature": round(temperature, 4),
                "real": blend_scores(probs, trees, real, weights),
            }
            dev = results["fits"][name]["real"]["dev"]
            print(f"{name}: dev " + ", ".join(f"{k} {v['macro_f1']}" for k, v in dev.items()), flush=True)
            save()
    save()


if __name__ == "__main__":
    main()
