"""Stage patterns: boosted trees on the pattern features of the generated training split, as
ONNX, for the served class to blend with the U-Net's (``waferflow.patterns``). With
``patterns.own_maps`` the trees fit on generated maps of their own (drawn here with the ``synth``
settings and their generator overrides) and the split's wafers that are not generated (a fab's
own labeled maps) instead of the split's generated wafers.

DVC runs ``python pipelines/patterns.py``. Outputs: ``data/patterns/`` (``trees.onnx``,
``patterns.json``: blend weight, classes, feature names, fit record), ``metrics/patterns.json``
(the trees alone on the generated validation and test splits, parity of the ONNX file with
scikit-learn) and ``reports/patterns/confusion_matrix.png``. It needs no trained U-Net; the
evaluate, novelty, export and gate stages read its output. The file is written only after its
parity holds on every validation and test wafer.
"""

from __future__ import annotations

import json
import time

import numpy as np

from waferflow.config import Params
from waferflow.fileio import atomic_path, write_json
from waferflow.layout import Layout

PARITY_TOLERANCE = 1e-5  # max |probability difference| ONNX vs scikit-learn (float32 outputs)


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Features, fit, ONNX, parity; the stage's outputs."""
    from waferflow.classes import CLASSES
    from waferflow.data.arrays import WaferArrays
    from waferflow.evaluation.metrics import class_summary
    from waferflow.evaluation.plots import plot_confusion
    from waferflow.patterns.features import FEATURE_NAMES, grid_features, original_shapes
    from waferflow.patterns.own_maps import GENERATED_SOURCE, own_map_features
    from waferflow.patterns.trees import META_FILE, TREES_FILE, PatternClassifier, fit_trees, parity, trees_to_onnx

    cfg = params.patterns
    out = layout.root / "data/patterns"
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        (out / TREES_FILE).unlink(missing_ok=True)
        meta = {"enabled": False, "reason": "patterns.enabled is false in params.yaml: the U-Net alone serves"}
        write_json(out / META_FILE, meta)
        write_json(layout.metrics / "patterns.json", meta)
        return meta

    started = time.perf_counter()
    features, labels, fitted_on = {}, {}, {}
    for split in ("train", "val", "test"):
        arrays = WaferArrays.from_parquet(layout.processed / f"{split}.parquet")
        keep = arrays.labels >= 0
        if split == "train" and cfg.own_maps is not None:  # the own maps stand in for the generated wafers
            keep &= (arrays.frame["source"] != GENERATED_SOURCE).to_numpy()
        arrays = arrays.take(np.flatnonzero(keep))
        shapes = original_shapes(arrays.frame, arrays.grids)
        features[split] = grid_features(
            arrays.grids, shapes, progress=progress, desc=f"pattern features: {split}", n_jobs=cfg.feature_jobs
        )
        labels[split] = arrays.labels
    fitted_on["training_split"] = int(len(labels["train"]))
    if cfg.own_maps is not None:
        own_x, own_y = own_map_features(
            params.synth, cfg.own_maps, params.preprocess.image_size, progress, n_jobs=cfg.feature_jobs
        )
        features["train"] = np.concatenate([own_x, features["train"]])
        labels["train"] = np.concatenate([own_y, labels["train"]])
        fitted_on["own_generated"] = int(len(own_y))
    if len(np.unique(labels["train"])) < 3:
        fitted = " + ".join(f"{n} {part.replace('_', ' ')}" for part, n in fitted_on.items())
        raise RuntimeError(
            f"the trees' training maps ({fitted}) hold {len(np.unique(labels['train']))} classes; the trees need >= 3"
        )
    feature_seconds = round(time.perf_counter() - started, 1)
    t0 = time.perf_counter()
    trees = fit_trees(features["train"], labels["train"], cfg)
    fit_seconds = round(time.perf_counter() - t0, 1)
    proto = trees_to_onnx(trees, len(FEATURE_NAMES)).SerializeToString()
    check = parity(trees, proto, np.concatenate([features["val"], features["test"]]))
    check["tolerance"] = PARITY_TOLERANCE
    check["passed"] = check["class_mismatches"] == 0 and check["max_abs_diff"] < PARITY_TOLERANCE
    if not check["passed"]:
        raise RuntimeError(
            f"the trees' ONNX file disagrees with scikit-learn on {check['wafers']} wafers (max |diff| "
            f"{check['max_abs_diff']:.2e}, {check['class_mismatches']} class mismatches): nothing written"
        )
    with atomic_path(out / TREES_FILE) as tmp:
        tmp.write_bytes(proto)
    classes = [CLASSES[int(k)] for k in trees.classes_]
    meta = {
        "enabled": True,
        "unet_weight": cfg.unet_weight,
        "class_weights": cfg.class_weights,
        "classes": classes,
        "features": list(FEATURE_NAMES),
        "params": cfg.model_dump(exclude={"feature_jobs"}),  # how it was computed is not the model
        "fitted_on": int(len(labels["train"])),
        "fitted_on_parts": fitted_on,
        "trees": trees.n_trees,
    }
    write_json(out / META_FILE, meta)

    served = PatternClassifier(out / TREES_FILE, meta)  # the written file, as the engine will run it
    probs = {split: served.proba_features(features[split]) for split in ("val", "test")}
    scores = {split: class_summary(labels[split], probs[split]) for split in probs}
    plot = plot_confusion(
        labels["test"],
        probs["test"].argmax(1),
        layout.reports / "patterns" / "confusion_matrix.png",
        "pattern trees alone, generated test split",
    )
    summary = {
        "unet_weight": cfg.unet_weight,
        "class_weights": cfg.class_weights,
        "fitted_on": meta["fitted_on"],
        "fitted_on_parts": fitted_on,
        "trees": meta["trees"],
        "features": len(FEATURE_NAMES),
        "generated_val": scores["val"],
        "generated_test": scores["test"],
        "parity": check,
        "feature_seconds": feature_seconds,
        "fit_seconds": fit_seconds,
        "plot": str(plot.relative_to(layout.root)),
    }
    write_json(layout.metrics / "patterns.json", summary)
    return summary


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "patterns.json").read_text())


def summarise(s: dict) -> list[str]:
    if "generated_test" not in s:
        return [f"patterns: no trees fitted ({s.get('reason', 'disabled')})"]
    parts = s.get("fitted_on_parts", {})
    own = (
        f" ({parts['own_generated']} generated maps of their own + {parts['training_split']} from the split)"
        if "own_generated" in parts
        else ""
    )
    return [
        f"pattern trees ({s['trees']} trees, {s['features']} features) fitted on {s['fitted_on']} training wafers"
        f"{own} "
        f"in {s['fit_seconds']} s; alone: generated test macro-F1 {s['generated_test']['macro_f1']:.4f}; served "
        f"blend {s['unet_weight']} x U-Net + {1 - s['unet_weight']:.2f} x trees -> data/patterns",
        "ONNX parity with scikit-learn on {wafers} wafers: max |diff| {max_abs_diff:.1e}, "
        "{class_mismatches} class mismatches".format(**s["parity"]),
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("patterns")
