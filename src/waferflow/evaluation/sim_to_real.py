"""How far the generated maps are from real ones, per class: the sim-to-real gap, measured.

For each class, the :mod:`wafer features <waferflow.data.features>` of the generated maps
(the reference) and of the real maps (the current window) go through the same evidently drift
check the monitor runs on production traffic (:func:`waferflow.monitoring.drift.check_drift`:
normed Wasserstein distance per feature, in reference standard deviations). A class whose real
maps sit far from its generated ones on ``fail_ratio`` or the ring profile is where the generator
is still wrong; the side-by-side gallery shows how. Compare on the real *dev* lots only (see
:mod:`waferflow.evaluation.real_maps`): the test lots are for reporting.

Example:
    >>> gap = sim_to_real_gap(generated_grids, generated_labels, real_grids, real_labels)  # doctest: +SKIP
    >>> gap["per_class"]["none"]["features"]["fail_ratio"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from waferflow.classes import CLASSES
from waferflow.monitoring.config import DriftConfig
from waferflow.data.features import FEATURES, feature_frame
from waferflow.viz.wafer_plots import save_wafer_grid

__all__ = ["sim_to_real_gap", "save_side_by_side", "gap_table"]

#: The same effect-size test as the monitor's; a class needs this many maps on each side.
MIN_MAPS = 20


def sim_to_real_gap(
    generated: Sequence[np.ndarray],
    generated_labels: Sequence[str],
    real: Sequence[np.ndarray],
    real_labels: Sequence[str],
    cfg: DriftConfig = DriftConfig(),
) -> dict:
    """Per class and over all maps: each wafer feature's distance real vs generated (normed
    Wasserstein, in generated-map standard deviations), the features that drifted, the medians
    side by side, and the mean distance (one number per class to follow over generator changes)."""
    from waferflow.monitoring.drift import check_drift

    gen_f = feature_frame(generated).assign(label=list(generated_labels))
    real_f = feature_frame(real).assign(label=list(real_labels))
    cfg = cfg.model_copy(update={"min_wafers": MIN_MAPS, "strong_drift": None})
    out: dict = {
        "features": list(FEATURES),
        "method": f"{cfg.num_method}, threshold {cfg.num_threshold}",
        "per_class": {},
    }
    for name in (*CLASSES, "all"):
        g = gen_f if name == "all" else gen_f[gen_f["label"] == name]
        r = real_f if name == "all" else real_f[real_f["label"] == name]
        if min(len(g), len(r)) < MIN_MAPS:
            out["per_class"][name] = {
                "generated": int(len(g)),
                "real": int(len(r)),
                "skipped": f"fewer than {MIN_MAPS} maps on one side",
            }
            continue
        s = check_drift(g[list(FEATURES)], r[list(FEATURES)], cfg).summary
        scores = {f: s["features"][f]["score"] for f in FEATURES}
        out["per_class"][name] = {
            "generated": int(len(g)),
            "real": int(len(r)),
            "mean_distance": round(float(np.mean(list(scores.values()))), 4),
            "drifted_share": s["drifted_share"],
            "drifted_features": s["drifted_features"],
            "features": scores,
            "median_generated": {f: round(float(g[f].median()), 4) for f in FEATURES},
            "median_real": {f: round(float(r[f].median()), 4) for f in FEATURES},
        }
    return out


def save_side_by_side(
    generated: Sequence[np.ndarray],
    generated_labels: Sequence[str],
    real: Sequence[np.ndarray],
    real_labels: Sequence[str],
    path: Path,
    per_side: int = 5,
    seed: int = 0,
) -> Path:
    """PNG, one row per class: ``per_side`` real maps, then ``per_side`` generated ones (drawn at
    random, seeded), each at its own grid size."""
    rng = np.random.default_rng(seed)
    rows = []
    for name in CLASSES:
        row = []
        for kind, grids, labels in (("real", real, real_labels), ("gen", generated, generated_labels)):
            idx = [i for i, lab in enumerate(labels) if lab == name]
            for i in rng.permutation(idx)[:per_side]:
                g = grids[i]
                row.append((g, None, f"{kind} {name} {g.shape[0]}x{g.shape[1]}"))
            row += [(np.zeros((2, 2), np.uint8), None, "")] * (per_side - min(per_side, len(idx)))
        rows.append(row)
    return save_wafer_grid(
        rows,
        path,
        f"real (left {per_side}) vs generated (right {per_side}) maps per class",
        cols=2 * per_side,
        title_size=10,
    )


def gap_table(gap: dict) -> pd.DataFrame:
    """One line per class: mean distance, drifted share and the fail-ratio medians."""
    rows = []
    for name, c in gap["per_class"].items():
        if "skipped" in c:
            continue
        rows.append(
            {
                "class": name,
                "mean_distance": c["mean_distance"],
                "drifted_share": c["drifted_share"],
                "fail_ratio_real": c["median_real"]["fail_ratio"],
                "fail_ratio_generated": c["median_generated"]["fail_ratio"],
                "edge_ratio_real": c["median_real"]["edge_ratio"],
                "edge_ratio_generated": c["median_generated"]["edge_ratio"],
            }
        )
    return pd.DataFrame(rows)
