"""The annotation queue: score the unlabeled pool, select by strategy, write what annotators need.

Outputs in ``out_dir`` (``data/al/queue``):

* ``queue.csv`` / ``queue.parquet`` — one row per selected wafer in query order: ``wafer_id``
  (``LOT:WAFER``, the id to return labels under), ``lot_id``, ``slot``, the strategy's score,
  entropy / margin / BALD of every selected wafer, predicted class, confidence and top 3, the
  wafer's PNG, and empty ``label`` and ``annotator`` columns to fill in;
* ``images/NNN_LOT_WAFER.png`` — the map with the predicted defect mask, one per wafer;
* ``overview.png`` — the first 48 selected wafers at a glance.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from waferflow.active.config import ALConfig  # noqa: E402
from waferflow.active.labels import queue_key, read_store  # noqa: E402
from waferflow.models.scoring import score_pool  # noqa: E402
from waferflow.active.strategies import bald, entropy, margin, select  # noqa: E402
from waferflow.classes import CLASSES  # noqa: E402
from waferflow.data.records import read_frame  # noqa: E402
from waferflow.fileio import atomic_path, save_figure  # noqa: E402
from waferflow.models.predictor import WaferPredictor  # noqa: E402
from waferflow.viz.names import wafer_file_name  # noqa: E402
from waferflow.viz.wafer_plots import plot_wafer, save_wafer_grid  # noqa: E402

__all__ = ["build_queue", "grids_of"]


def grids_of(frame: pd.DataFrame) -> np.ndarray:
    """(N, H, W) uint8 grids of a split frame (all one shape after the split stage)."""
    if frame.empty:
        return np.zeros((0, 1, 1), np.uint8)
    (h, w), n = (int(frame["height"].iloc[0]), int(frame["width"].iloc[0])), len(frame)
    return np.frombuffer(b"".join(frame["die_grid"]), np.uint8).reshape(n, h, w)


def _true_label(attrs: str | None) -> str | None:
    import json

    try:
        return json.loads(attrs).get("true_label") if attrs else None
    except ValueError:
        return None


def build_queue(
    predictor: WaferPredictor,
    pool_path: Path,
    labeled_paths: list[Path],
    cfg: ALConfig,
    out_dir: Path,
    labels_dir: Path,
    progress: bool = True,
    novelty: tuple | None = None,
) -> dict:
    """Score, select, write the queue; returns the summary for ``metrics/al_query.json``.
    ``novelty``: the novelty stage's ``(NoveltyHead, triage calibration)``, for ``novel_first``."""
    if cfg.novel_first and novelty is None:
        raise ValueError("al.novel_first needs the novelty stage's head (data/novelty): run `dvc repro novelty`")
    t0 = time.perf_counter()
    pool = read_frame(pool_path).reset_index(drop=True)
    if pool.empty:
        raise RuntimeError(f"{pool_path} has no unlabeled wafers: nothing to query")
    grids = grids_of(pool)
    scores = score_pool(
        predictor,
        grids,
        mc_samples=cfg.mc_samples,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        progress=progress,
        desc="scoring pool",
    )
    labeled_emb = None
    if cfg.strategy in ("coreset", "hybrid"):
        labeled = pd.concat([read_frame(p) for p in labeled_paths], ignore_index=True)
        labeled_emb = score_pool(
            predictor, grids_of(labeled), batch_size=cfg.batch_size, progress=progress, desc="embedding labeled"
        ).emb
    novel = np.zeros(0, int)
    if cfg.novel_first:
        from waferflow.triage.decide import novelty_p_values
        from waferflow.triage.novelty import novelty_scores

        head, calibration = novelty
        pool_novelty = novelty_scores(predictor, head, grids, batch_size=cfg.batch_size)
        unusual = np.flatnonzero(novelty_p_values(pool_novelty, calibration) < calibration["review_novelty"])
        novel = unusual[np.argsort(-pool_novelty[unusual], kind="stable")][: cfg.budget]
    t_score = time.perf_counter() - t0
    rest = np.setdiff1d(np.arange(len(pool)), novel)
    picked, strat_score = (
        select(
            cfg.strategy,
            cfg.budget - len(novel),
            probs=scores.probs[rest],
            mc_probs=scores.mc_probs[:, rest] if scores.mc_probs.size else scores.mc_probs,
            pool_emb=scores.emb[rest],
            labeled_emb=labeled_emb,
            rng=np.random.default_rng(cfg.seed),
            prefilter=cfg.prefilter,
        )
        if cfg.budget > len(novel)
        else (np.zeros(0, int), np.zeros(0))
    )
    picked = np.concatenate([novel, rest[picked]]).astype(int)
    strat_score = np.concatenate([pool_novelty[novel] if len(novel) else np.zeros(0), strat_score])
    ent, mar, bal = entropy(scores.probs), margin(scores.probs), bald(scores.mc_probs)
    chosen = pool.iloc[picked].reset_index(drop=True)
    probs, masks = predictor.predict(grids[picked], batch_size=cfg.batch_size)
    store = read_store(labels_dir)
    round_ = int(store["round"].max()) + 1 if len(store) else 1

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "images").mkdir(exist_ok=True)
    rows = []
    for rank, (i, rec) in enumerate(
        tqdm(list(zip(picked, chosen.to_dict("records"))), desc="queue images", disable=not progress, unit="wafer")
    ):
        p = probs[rank]
        top = np.argsort(-p)[:3]
        image = f"images/{rank + 1:03d}_{wafer_file_name(rec['lot_id'], rec['wafer_id'])}"
        fig, ax = plt.subplots(figsize=(3.2, 3.5))
        plot_wafer(
            ax,
            grids[i],
            masks[rank],
            f"#{rank + 1} {rec['lot_id']}:{rec['wafer_id']}\n" + ", ".join(f"{CLASSES[k]} {p[k]:.2f}" for k in top),
        )
        fig.tight_layout()
        save_figure(fig, out_dir / image, dpi=100)
        plt.close(fig)
        rows.append(
            {
                "query_rank": rank + 1,
                "wafer_id": queue_key(rec["lot_id"], rec["wafer_id"]),
                "lot_id": rec["lot_id"],
                "slot": rec["wafer_id"],
                "strategy": "novel_first" if rank < len(novel) else cfg.strategy,
                "score": float(strat_score[rank]),
                "entropy": float(ent[i]),
                "margin": float(mar[i]),
                "bald": float(bal[i]),
                "predicted": CLASSES[top[0]],
                "confidence": float(p[top[0]]),
                "top3": "; ".join(f"{CLASSES[k]} {p[k]:.3f}" for k in top),
                "image": image,
                "round": round_,
                "label": "",
                "annotator": "",
            }
        )
    queue = pd.DataFrame(rows)
    for name, write in (("queue.parquet", queue.to_parquet), ("queue.csv", queue.to_csv)):
        with atomic_path(out_dir / name) as tmp:
            write(tmp, index=False)
    _overview(grids[picked[:48]], masks[:48], queue.head(48), out_dir / "overview.png", cfg.strategy)

    def dist(v: np.ndarray) -> dict:
        q = np.quantile(v, [0.1, 0.5, 0.9])
        return {
            "mean": round(float(v.mean()), 4),
            "p10": round(float(q[0]), 4),
            "p50": round(float(q[1]), 4),
            "p90": round(float(q[2]), 4),
        }

    truth = [_true_label(a) for a in chosen["attrs"]]
    pool_pred = pd.Series([CLASSES[k] for k in scores.probs.argmax(1)]).value_counts().to_dict()
    return {
        "strategy": cfg.strategy,
        "budget": cfg.budget,
        "novel_first": int(len(novel)) if cfg.novel_first else None,  # unusual wafers put first
        "round": round_,
        "pool_size": int(len(pool)),
        "selected": int(len(queue)),
        "queue": str(out_dir / "queue.csv"),
        "scoring_seconds": round(t_score, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "pool_entropy": dist(ent),
        "selected_entropy": dist(ent[picked]),
        "pool_bald": dist(bal),
        "selected_bald": dist(bal[picked]),
        "selected_predicted_classes": queue["predicted"].value_counts().to_dict(),
        "pool_predicted_classes": {k: int(v) for k, v in pool_pred.items()},
        # synthetic pools carry the generator's truth: how the selection's real class mix looks
        "selected_true_classes": (pd.Series(truth).value_counts().to_dict() if all(truth) else None),
    }


def _overview(grids: np.ndarray, masks: np.ndarray, queue: pd.DataFrame, path: Path, strategy: str) -> None:
    cols = min(8, len(queue))
    panels = [
        (grids[k], masks[k], f"#{row['query_rank']} {row['predicted']} {row['confidence']:.2f}")
        for k, row in enumerate(queue.to_dict("records"))
    ]
    save_wafer_grid(
        [panels[i : i + cols] for i in range(0, len(panels), cols)],
        path,
        f"annotation queue ({strategy}): first {len(queue)} wafers, predicted class and mask",
        cols=cols,
        cell=(1.6, 1.8),
        dpi=100,
        title_size=9,
    )
