"""Each query strategy on tiny pools with known probabilities/embeddings picks the expected wafers;
BALD's MC-dropout passes differ; scoring gives the served model's probabilities."""

import numpy as np
import pandas as pd
import pytest
import torch

from waferflow.models.scoring import score_pool
from waferflow.active.strategies import STRATEGIES, bald, k_center_greedy, margin, select
from waferflow.models.config import ModelConfig
from waferflow.models.predictor import WaferPredictor
from waferflow.models.wafer_unet import WaferUNet

PROBS = np.array(
    [
        [0.98, 0.01, 0.01],  # 0 confident
        [0.36, 0.33, 0.31],  # 1 flattest
        [0.50, 0.49, 0.01],  # 2 two-way tie: smallest margin
        [0.70, 0.20, 0.10],  # 3
    ]
)


def test_entropy_picks_the_flattest_and_margin_the_closest_call():
    assert select("entropy", 1, probs=PROBS)[0].tolist() == [1]
    assert select("entropy", 2, probs=PROBS)[0].tolist() == [1, 3]  # entropy 0.80 beats the 0.74 of the tie
    assert select("margin", 1, probs=PROBS)[0].tolist() == [2]
    assert margin(PROBS)[2] == pytest.approx(0.01)


def test_bald_prefers_disagreeing_passes_over_agreed_uncertainty():
    # wafer 0: every pass says 50/50 (aleatoric; BALD ~0); wafer 1: passes disagree confidently
    mc = np.array([[[0.5, 0.5], [0.99, 0.01]], [[0.5, 0.5], [0.01, 0.99]]])
    scores = bald(mc)
    assert scores[0] == pytest.approx(0.0, abs=1e-9) and scores[1] > 0.5
    assert select("bald", 1, mc_probs=mc, probs=mc.mean(0))[0].tolist() == [1]
    with pytest.raises(ValueError, match="MC samples"):
        bald(mc[:1])


def test_coreset_takes_the_pool_point_farthest_from_the_labeled_set_then_spreads():
    labeled = np.array([[0.0, 0.0]])
    pool = np.array([[1.0, 0.0], [10.0, 0.0], [10.5, 0.0], [0.0, 6.0]])
    picked, dist = k_center_greedy(pool, labeled, 2)
    assert picked.tolist() == [2, 3]  # farthest first, then not its neighbour (1) but the other direction
    assert dist[0] == pytest.approx(10.5)
    assert select("coreset", 1, pool_emb=pool, labeled_emb=labeled)[0].tolist() == [2]


def test_hybrid_is_diverse_among_the_uncertain():
    probs = np.array([[0.34, 0.33, 0.33], [0.34, 0.33, 0.33], [0.35, 0.33, 0.32], [0.98, 0.01, 0.01]])
    emb = np.array([[5.0, 0.0], [5.1, 0.0], [-5.0, 0.0], [50.0, 0.0]])  # 0 and 1 near-duplicates; 3 confident
    picked, _ = select("hybrid", 2, probs=probs, pool_emb=emb, labeled_emb=np.zeros((1, 2)), prefilter=1.5)
    assert 3 not in picked and {0, 1} != set(picked.tolist()) and 2 in picked


def test_random_is_seeded_and_every_strategy_returns_budget_unique_rows():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(9), size=50)
    mc = rng.dirichlet(np.ones(9), size=(4, 50))
    emb = rng.normal(size=(50, 8))
    for name in STRATEGIES:
        picked, scores = select(
            name, 7, probs=probs, mc_probs=mc, pool_emb=emb, labeled_emb=emb[:5], rng=np.random.default_rng(1)
        )
        assert len(set(picked.tolist())) == 7 and len(scores) == 7, name
    a = select("random", 5, probs=probs, rng=np.random.default_rng(9))[0]
    b = select("random", 5, probs=probs, rng=np.random.default_rng(9))[0]
    assert a.tolist() == b.tolist()
    with pytest.raises(ValueError, match="unknown al.strategy"):
        select("uncertainty", 3, probs=probs)


def test_scoring_matches_the_model_and_mc_dropout_passes_differ():
    torch.manual_seed(0)
    net = WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8), classifier_dropout=0.5)).eval()
    predictor = WaferPredictor(net, temperature=2.5)
    rng = np.random.default_rng(0)
    grids = rng.integers(0, 3, size=(6, 32, 32)).astype(np.uint8)
    scores = score_pool(predictor, grids, mc_samples=5, batch_size=4)
    served, _ = predictor.predict(grids)
    np.testing.assert_allclose(scores.probs, served, atol=1e-5)  # dropout off, calibrated: what the model serves
    assert scores.mc_probs.shape == (5, 6, 9) and scores.emb.shape[0] == 6
    assert np.abs(scores.mc_probs[0] - scores.mc_probs[1]).max() > 1e-4  # the passes are different samples
    np.testing.assert_allclose(scores.mc_probs.sum(-1), 1.0, atol=1e-5)


def test_queue_lists_pool_wafers_with_scores_images_and_empty_label_columns(tiny_project, tmp_path):
    from waferflow.active.config import ALConfig
    from waferflow.active.query import build_queue
    from waferflow.data.records import read_frame

    torch.manual_seed(0)
    net = WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8))).eval()
    processed = tiny_project / "data/processed"
    summary = build_queue(
        WaferPredictor(net),
        processed / "unlabeled.parquet",
        [processed / "train.parquet"],
        ALConfig(strategy="hybrid", budget=4, mc_samples=3),
        tmp_path / "queue",
        tmp_path / "labels",
        progress=False,
    )
    queue = pd.read_csv(tmp_path / "queue/queue.csv", keep_default_na=False)
    pool = read_frame(processed / "unlabeled.parquet")
    assert len(queue) == 4 == summary["selected"] and queue["wafer_id"].is_unique
    assert set(queue["wafer_id"]) <= {f"{lot}:{w}" for lot, w in zip(pool["lot_id"], pool["wafer_id"])}
    assert (queue["label"] == "").all() and (queue["round"] == 1).all() and queue["query_rank"].tolist() == [1, 2, 3, 4]
    assert all((tmp_path / "queue" / img).stat().st_size > 0 for img in queue["image"])
    assert (tmp_path / "queue/overview.png").is_file() and summary["pool_size"] == len(pool)
    assert sum(summary["selected_predicted_classes"].values()) == 4


def test_novel_first_puts_the_unusual_pool_wafers_first(tiny_project, tmp_path):
    """Pool wafers made unusual (a reticle grid of failing rows and columns) take the first
    places, most novel first; the strategy fills the rest; without a head it refuses."""
    from waferflow.active.config import ALConfig
    from waferflow.active.query import build_queue
    from waferflow.data.arrays import WaferArrays
    from waferflow.data.records import read_records, write_records
    from waferflow.triage.novelty import fit_triage

    torch.manual_seed(0)
    predictor = WaferPredictor(WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8)))).eval()
    processed = tiny_project / "data/processed"
    train = WaferArrays.from_parquet(processed / "train.parquet")
    val = WaferArrays.from_parquet(processed / "val.parquet")
    head, cal = fit_triage(
        predictor,
        (train.grids, train.labels),
        (val.grids, val.labels),
        [str(c) for c in range(9)],
        stages=(1, 3),
        review_novelty=0.1,
        reject_novelty=0.05,
    )
    records = read_records(processed / "unlabeled.parquet")
    for rec in records[:3]:  # three pool wafers with a reticle grid
        grid = rec.die_grid.copy()
        lines = (np.indices(grid.shape)[0] % 4 == 0) | (np.indices(grid.shape)[1] % 4 == 0)
        grid[lines & (grid != 0)] = 2
        rec.die_grid = grid
    write_records(records, tmp_path / "pool.parquet")
    cfg = ALConfig(strategy="entropy", budget=6, novel_first=True)
    args = (tmp_path / "pool.parquet", [processed / "train.parquet"], cfg, tmp_path / "queue", tmp_path / "labels")
    summary = build_queue(predictor, *args, progress=False, novelty=(head, cal))
    queue = pd.read_csv(tmp_path / "queue/queue.csv", keep_default_na=False)
    firsts = {f"{r.lot_id}:{r.wafer_id}" for r in records[:3]}
    n = summary["novel_first"]
    assert 3 <= n <= 6 and len(queue) == 6 and queue["wafer_id"].is_unique
    assert set(queue["wafer_id"][:3]) == firsts and (queue["strategy"][:n] == "novel_first").all()
    assert queue["score"][:n].is_monotonic_decreasing and (queue["strategy"][n:] == "entropy").all()
    with pytest.raises(ValueError, match="dvc repro novelty"):
        build_queue(predictor, *args, progress=False)
