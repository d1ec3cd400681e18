"""Stage novelty: the open-set triage model — a density of known wafers in the trained model's
feature space (``waferflow.triage.novelty``), fitted on the training split, and the PASS /
REVIEW / REJECT thresholds calibrated on the validation split (``waferflow.triage.decide``).

DVC runs ``python pipelines/novelty.py``. Outputs: ``data/novelty/`` (``head.pt``: the head's
tensors; ``triage.json``: the calibration the export puts in its metadata),
``metrics/novelty.json``: AUROC of the score on generated probes no class covers (a reticle-grid
pattern, mixed two-pattern wafers) against the generated test split, per stage and combined,
and the triage's decisions on the test split.
"""

from __future__ import annotations

import json
import time

import numpy as np

from waferflow.config import Params
from waferflow.fileio import atomic_path, write_json
from waferflow.layout import Layout

PROBE_SEED = 20261125  # the probes' generator seed: fixed, and none of the splits' seeds


def run(params: Params, layout: Layout, progress: bool = True) -> dict:
    """Fit the novelty head, calibrate the triage, measure both."""
    import torch
    from sklearn.metrics import roc_auc_score

    from waferflow.classes import CLASSES
    from waferflow.data.arrays import WaferArrays
    from waferflow.data.resize import resize_grid
    from waferflow.monitoring.scenarios import mixed_pattern_wafers, stream
    from waferflow.patterns.features import original_shapes
    from waferflow.patterns.trees import PatternClassifier, served_class
    from waferflow.registry.pyfunc import load_weights
    from waferflow.triage.decide import DECISIONS, decide
    from waferflow.triage.novelty import fit_triage, novelty_scores

    started = time.perf_counter()
    cfg = params.triage
    trained = layout.train_run()
    predictor = load_weights(layout.root / trained["weights"])

    def labeled(split: str) -> WaferArrays:
        arrays = WaferArrays.from_parquet(layout.processed / f"{split}.parquet")
        return arrays.take(np.flatnonzero(arrays.labels >= 0))

    train, val, test = labeled("train"), labeled("val"), labeled("test")
    patterns = PatternClassifier.from_dir(layout.root / "data/patterns")  # None: the U-Net alone serves

    def served_probs(arrays: WaferArrays) -> np.ndarray:
        """The class probabilities the engine serves: the conformal sets are calibrated on them."""
        probs = predictor.predict(arrays.grids)[0]
        return (
            probs
            if patterns is None
            else patterns.blend(probs, arrays.grids, original_shapes(arrays.frame, arrays.grids))
        )

    head, calibration = fit_triage(
        predictor,
        (train.grids, train.labels),
        (val.grids, val.labels),
        list(CLASSES),
        cfg.stages,
        cfg.set_alpha,
        cfg.review_novelty,
        cfg.reject_novelty,
        progress=progress,
        val_probs=served_probs(val),
    )
    out = layout.root / "data/novelty"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "head.pt") as tmp:
        torch.save(head.state(), tmp)
    write_json(
        out / "triage.json",
        {
            **calibration,
            "model_version": trained["version"],
            "stages": list(cfg.stages),
            "class_probs": served_class(patterns),  # the served class, its weights named
        },
    )

    # Probes no class covers, at the model input size; the test split is the known side.
    size = tuple(params.preprocess.image_size)
    probes = {
        "novel_pattern": stream("novel_pattern", cfg.probe_wafers, PROBE_SEED, params.synth),
        "mixed_pattern": mixed_pattern_wafers(cfg.probe_wafers, PROBE_SEED, params.synth),
    }
    known = novelty_scores(predictor, head, test.grids, per_stage=True)
    auroc = {}
    for name, records in probes.items():
        grids = np.stack([resize_grid(r.die_grid, size) for r in records])
        scores = novelty_scores(predictor, head, grids, per_stage=True)
        y = np.r_[np.zeros(len(known)), np.ones(len(scores))]
        auroc[name] = {
            "combined": round(float(roc_auc_score(y, np.r_[known.max(1), scores.max(1)])), 4),
            **{
                f"stage_{s}": round(float(roc_auc_score(y, np.r_[known[:, i], scores[:, i]])), 4)
                for i, s in enumerate(head.stages)
            },
        }
    test_probs = served_probs(test)
    decisions = np.array([t["decision"] for t in decide(test_probs, known.max(1), calibration)])
    passed = decisions == "PASS"
    wrong = test_probs.argmax(1) != test.labels
    summary = {
        "model_version": trained["version"],
        "stages": list(head.stages),
        "fitted_on": int(len(train)),
        "calibrated_on": int(len(val)),
        "auroc_vs_test_split": auroc,
        "test_split_triage": {
            "wafers": int(len(test)),
            **{d.lower(): round(float((decisions == d).mean()), 4) for d in DECISIONS},
            "error_among_pass": round(float(wrong[passed].mean()), 4) if passed.any() else None,
            "error_overall": round(float(wrong.mean()), 4),
        },
        "class_thresholds": dict(zip(CLASSES, calibration["class_thresholds"])),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(layout.metrics / "novelty.json", summary)
    return summary


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "novelty.json").read_text())


def summarise(s: dict) -> list[str]:
    t = s["test_split_triage"]
    return [
        f"novelty head of model version {s['model_version']} (stages {s['stages']}) fitted on {s['fitted_on']} "
        f"training wafers, triage calibrated on {s['calibrated_on']} -> data/novelty",
        *(
            f"AUROC {name} vs the test split: {a['combined']} ("
            + ", ".join(f"{k} {v}" for k, v in a.items() if k != "combined")
            + ")"
            for name, a in s["auroc_vs_test_split"].items()
        ),
        f"test split: PASS {t['pass']:.1%} (error among them {t['error_among_pass']}), REVIEW {t['review']:.1%}, "
        f"REJECT {t['reject']:.1%}; error over all {t['error_overall']}",
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("novelty")
