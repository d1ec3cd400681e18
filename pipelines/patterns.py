"""Stage patterns: boosted trees on the pattern features of the generated training split, as
ONNX, for the served class to blend with the U-Net's (``waferflow.patterns``). With
``patterns.own_maps`` the trees fit on generated maps of their own (drawn here with the ``synth``
settings and their generator overrides) and the split's wafers that are not generated (a fab's
own labeled maps) instead of the split's generated wafers.

DVC runs ``python pipelines/patterns.py``. Outputs: ``data/patterns/`` (``trees.onnx``,
``patterns.json``: blend weight, classes, feature names, fit record), ``metrics/patterns.json``
(the trees alone on the generated validation and test splits, parity of the ONNX file with
scikit-learn) and ``reports/patterns/confusion_matrix.png``. With ``patterns.density_cnn`` the
stage also fits the density CNN (:mod:`waferflow.patterns.density`) on the same maps (with
``density_cnn.draws``, on that many draws of the own maps) and writes it as ``density.onnx``
(its parity with torch checked the same way; its figures under ``density_cnn`` in the
metrics). It needs no trained U-Net; the
evaluate, novelty, export and gate stages read its output. Each file is written only after its
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
    from waferflow.patterns.density import DENSITY_FILE
    from waferflow.patterns.own_maps import GENERATED_SOURCE, own_map_features
    from waferflow.patterns.trees import META_FILE, TREES_FILE, PatternClassifier, fit_trees, parity, trees_to_onnx

    cfg = params.patterns
    out = layout.root / "data/patterns"
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        (out / TREES_FILE).unlink(missing_ok=True)
        (out / DENSITY_FILE).unlink(missing_ok=True)
        meta = {"enabled": False, "reason": "patterns.enabled is false in params.yaml: the U-Net alone serves"}
        write_json(out / META_FILE, meta)
        write_json(layout.metrics / "patterns.json", meta)
        return meta

    if cfg.density_cnn is not None and any(n % 2 for n in params.preprocess.image_size):
        raise ValueError(
            "patterns.density_cnn reads the model input at half its size: preprocess.image_size "
            f"{tuple(params.preprocess.image_size)} must be even (or set patterns.density_cnn to null)"
        )
    started = time.perf_counter()
    features, labels, grids, fitted_on = {}, {}, {}, {}
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
        grids[split] = arrays.grids
    fitted_on["training_split"] = int(len(labels["train"]))
    density_train = grids["train"], labels["train"]  # the density CNN's training maps
    if cfg.own_maps is not None:
        own_x, own_y, own_grids = own_map_features(
            params.synth, cfg.own_maps, params.preprocess.image_size, progress, n_jobs=cfg.feature_jobs, grids=True
        )
        if cfg.density_cnn is not None:
            cnn_grids, cnn_y = _density_own_maps(params, own_grids, own_y, progress)
            density_train = np.concatenate([cnn_grids, grids["train"]]), np.concatenate([cnn_y, labels["train"]])
        features["train"] = np.concatenate([own_x, features["train"]])
        labels["train"] = np.concatenate([own_y, labels["train"]])
        grids["train"] = np.concatenate([own_grids, grids["train"]])
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
    check = _checked(
        "the trees' ONNX file",
        "scikit-learn",
        parity(trees, proto, np.concatenate([features["val"], features["test"]])),
    )
    density = None
    if cfg.density_cnn is not None:  # fitted and checked before any file is written
        density = _fit_density(
            cfg.density_cnn,
            {**grids, "train": density_train[0]},
            {**labels, "train": density_train[1]},
        )
    with atomic_path(out / TREES_FILE) as tmp:
        tmp.write_bytes(proto)
    if density is not None:
        with atomic_path(out / DENSITY_FILE) as tmp:
            tmp.write_bytes(density["onnx"])
    else:
        (out / DENSITY_FILE).unlink(missing_ok=True)
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
        **({"density": {"file": DENSITY_FILE, **density["meta"]}} if density is not None else {}),
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
    if density is not None:  # the CNN alone (no U-Net here to blend with)
        cnn = {split: served.proba_density(grids[split]) for split in ("val", "test")}
        summary["density_cnn"] = {
            **meta["density"],
            "parity": density["parity"],
            "fit_seconds": density["fit_seconds"],
            **{f"generated_{split}": class_summary(labels[split], cnn[split]) for split in cnn},
        }
    write_json(layout.metrics / "patterns.json", summary)
    return summary


def _checked(what: str, reference: str, check: dict) -> dict:
    """``check`` (:func:`~waferflow.patterns.trees.probability_parity`) with its tolerance and
    verdict; raises, naming ``what`` and its ``reference``, when it failed."""
    check = {**check, "tolerance": PARITY_TOLERANCE}
    check["passed"] = check["class_mismatches"] == 0 and check["max_abs_diff"] < PARITY_TOLERANCE
    if not check["passed"]:
        raise RuntimeError(
            f"{what} disagrees with {reference} on {check['wafers']} wafers (max |diff| "
            f"{check['max_abs_diff']:.2e}, {check['class_mismatches']} class mismatches): nothing written"
        )
    return check


def _density_own_maps(params: Params, own_grids: np.ndarray, own_y: np.ndarray, progress: bool) -> tuple:
    """The own maps the density CNN fits on (grids, class indices): the first
    ``patterns.density_cnn.draws`` draws of the trees' (``own_grids``, ``own_y``: all of them when
    it is None), and the draws beyond the trees' drawn here, their grids only."""
    from waferflow.patterns.own_maps import own_map_grids

    own, draws = params.patterns.own_maps, params.patterns.density_draws
    kept = min(draws, own.draws) * (len(own_y) // own.draws)  # every draw holds per_class maps a class
    if draws <= own.draws:
        return own_grids[:kept], own_y[:kept]
    more, _, more_y = own_map_grids(
        params.synth, own.model_copy(update={"draws": draws}), params.preprocess.image_size, progress, first=own.draws
    )
    return np.concatenate([own_grids[:kept], np.stack(more)]), np.concatenate([own_y[:kept], more_y])


def _fit_density(cfg, grids: dict, labels: dict) -> dict:
    """The density CNN on the training maps (``cfg``: ``patterns.density_cnn``), as ONNX with its
    parity on the validation and test maps; ``onnx`` (the file's bytes), ``meta`` (for
    ``patterns.json``), ``parity``, ``fitted_on``, ``fit_seconds``. Raises when the parity fails."""
    from waferflow.patterns.density import (
        density_picture,
        density_to_onnx,
        fit_density_ensemble,
        predict_ensemble,
        run_density_onnx,
    )
    from waferflow.patterns.trees import onnx_session, probability_parity

    h, w = grids["train"].shape[1:]
    picture = (h // 2, w // 2)  # the stage checked that they are even
    t0 = time.perf_counter()
    x = density_picture(grids["train"], cfg.sigma, picture, cfg.lines)
    model = fit_density_ensemble(x, labels["train"], cfg)
    fit_seconds = round(time.perf_counter() - t0, 1)
    proto = density_to_onnx(model, x.shape[1], picture)
    check_x = density_picture(np.concatenate([grids["val"], grids["test"]]), cfg.sigma, picture, cfg.lines)
    ref = predict_ensemble(model, check_x)
    got = run_density_onnx(onnx_session(proto), check_x)
    check = _checked("the density CNN's ONNX file", "torch", probability_parity(got, ref))
    meta = {**cfg.model_dump(), "picture": list(picture), "fitted_on": int(len(x))}
    return {"onnx": proto, "meta": meta, "parity": check, "fit_seconds": fit_seconds}


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
    cnn = s.get("density_cnn")
    density = (
        [
            f"density CNN ({cnn['seeds']} seeds) fitted on {cnn['fitted_on']} maps in {cnn['fit_seconds']} s; alone: "
            f"generated test macro-F1 {cnn['generated_test']['macro_f1']:.4f}; ONNX parity with torch: max |diff| "
            f"{cnn['parity']['max_abs_diff']:.1e}, {cnn['parity']['class_mismatches']} class mismatches"
        ]
        if cnn
        else []
    )
    wc = cnn["weight"] if cnn else 0.0
    return [
        f"pattern trees ({s['trees']} trees, {s['features']} features) fitted on {s['fitted_on']} training wafers"
        f"{own} "
        f"in {s['fit_seconds']} s; alone: generated test macro-F1 {s['generated_test']['macro_f1']:.4f}; served "
        f"blend {s['unet_weight']} x U-Net + "
        + (f"{wc} x density CNN + " if cnn else "")
        + f"{1 - s['unet_weight'] - wc:.2f} x trees -> data/patterns",
        "ONNX parity with scikit-learn on {wafers} wafers: max |diff| {max_abs_diff:.1e}, "
        "{class_mismatches} class mismatches".format(**s["parity"]),
        *density,
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("patterns")
