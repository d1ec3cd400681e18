"""Open-set triage: the novelty head, the conformal thresholds, the decision, the export and engine."""

import json

import numpy as np
import pytest
import torch

from tests.conftest import disc
from waferflow.classes import CLASSES as WAFER_CLASSES
from waferflow.data.arrays import WaferArrays
from waferflow.inference.engine import InferenceEngine
from waferflow.inference.export import export_onnx
from waferflow.models.config import ModelConfig
from waferflow.models.predictor import WaferPredictor
from waferflow.models.wafer_unet import WaferUNet
from waferflow.triage.decide import calibrate_triage, decide, novelty_p_values, prediction_sets
from waferflow.triage.novelty import NoveltyHead, fit_novelty, fit_triage, novelty_heatmap, novelty_scores

CLASSES = ["A", "B", "C"]


def _known(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Disc wafers with 2-8 % random fails (label 0), a centre blob (1) or a rim band (2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size)) - (size - 1) / 2
    r = np.hypot(yy, xx) / (size / 2)
    grids, labels = [], []
    for i in range(n):
        fail = rng.random((size, size)) < rng.uniform(0.02, 0.08)
        label = i % 3
        if label == 1:
            fail |= (r < rng.uniform(0.2, 0.35)) & (rng.random((size, size)) < 0.8)
        elif label == 2:
            fail |= (r > 0.85) & (rng.random((size, size)) < 0.8)
        grids.append(np.where(r <= 1, np.where(fail, 2, 1), 0).astype(np.uint8))
        labels.append(label)
    return np.stack(grids), np.array(labels)


def _reticle(grids: np.ndarray, period: int = 4, quadrant: bool = False) -> np.ndarray:
    """The same wafers with a reticle grid of failing rows and columns (in one quadrant only)."""
    out = grids.copy()
    yy, xx = np.indices(grids.shape[1:])
    lines = (yy % period == 0) | (xx % period == 0)
    if quadrant:
        lines &= (yy < grids.shape[1] // 2) & (xx < grids.shape[2] // 2)
    out[:, lines] = np.where(out[:, lines] != 0, 2, 0)
    return out


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    predictor = WaferPredictor(WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8)))).eval()
    grids, labels = _known(240, seed=0)
    return predictor, fit_novelty(predictor, grids, labels, stages=(1, 3))


def test_a_reticle_grid_scores_far_above_known_wafers_and_the_heatmap_finds_it(fitted):
    predictor, head = fitted
    known, _ = _known(120, seed=1)  # wafers the head never saw, drawn as the known ones were
    novel = _reticle(known[:40])
    s_known, s_novel = novelty_scores(predictor, head, known), novelty_scores(predictor, head, novel)
    assert np.median(s_novel) > np.quantile(s_known, 0.99) + 1.0
    assert novelty_scores(predictor, head, novel[:5], per_stage=True).shape == (5, 2)

    heat = novelty_heatmap(predictor, head, _reticle(known[:8], quadrant=True))
    assert heat.shape == (8, 32, 32) and heat.max() <= 1.0 + 1e-6 and (heat[:, known[0] == 0] == 0).all()
    inside, outside = heat[:, :16, :16].mean(), heat[:, 16:, 16:].mean()
    assert inside > 2 * outside


def test_the_head_round_trips_through_its_tensors(fitted, tmp_path):
    predictor, head = fitted
    torch.save(head.state(), tmp_path / "head.pt")
    again = NoveltyHead.from_state(torch.load(tmp_path / "head.pt", weights_only=True))
    grids, _ = _known(12, seed=3)
    np.testing.assert_allclose(novelty_scores(predictor, again, grids), novelty_scores(predictor, head, grids))


def test_fit_refuses_stages_the_encoder_does_not_have(fitted):
    predictor, _ = fitted
    with pytest.raises(ValueError, match="encoder stages 1..3"):
        fit_novelty(predictor, *_known(30, seed=0), stages=(1, 5))


def _exchangeable(n: int, seed: int):
    """Probabilities and labels of a 3-class model whose confidence tracks correctness."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), labels] += rng.uniform(0, 4, n)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, labels, rng.normal(0, 1, n)


def test_conformal_sets_cover_each_class_and_novelty_flags_known_wafers_at_the_chosen_rate():
    probs, labels, novelty = _exchangeable(3000, seed=0)
    cal = calibrate_triage(probs, labels, novelty, CLASSES, set_alpha=0.1, review_novelty=0.05, reject_novelty=0.01)
    probs2, labels2, novelty2 = _exchangeable(6000, seed=1)
    sets = prediction_sets(probs2, cal)
    for c in range(3):  # class-conditional: >= 90 % for every class, within sampling noise
        assert sets[labels2 == c, c].mean() > 0.87
    p = novelty_p_values(novelty2, cal)
    assert 0.03 < (p < 0.05).mean() < 0.07 and 0.003 < (p < 0.01).mean() < 0.02
    decisions = np.array([t["decision"] for t in decide(probs2, novelty2, cal)])
    assert 0.003 < (decisions == "REJECT").mean() < 0.02
    passed = decisions == "PASS"  # the confident wafers pass, and they are right far more often
    wrong = probs2.argmax(1) != labels2
    assert 0.2 < passed.mean() < 0.95 and wrong[passed].mean() < wrong.mean() / 2


def test_each_decision_says_why():
    probs, labels, novelty = _exchangeable(600, seed=2)
    cal = calibrate_triage(probs, labels, novelty, CLASSES, set_alpha=0.1)
    far = float(np.max(novelty)) + 5
    out = decide(np.array([[0.98, 0.01, 0.01], [0.45, 0.45, 0.10], [0.98, 0.01, 0.01]]), np.array([0.0, 0.0, far]), cal)
    assert [o["decision"] for o in out] == ["PASS", "REVIEW", "REJECT"]
    assert out[0]["prediction_set"] == ["A"] and "only class" in out[0]["reason"]
    assert "could be A or B" in out[1]["reason"] or "no class fits" in out[1]["reason"]
    assert out[2]["reason"].startswith("novel:") and out[2]["novelty_p"] == pytest.approx(1 / 601, rel=1e-2)
    json.dumps(out)


def test_calibration_refuses_what_it_cannot_calibrate():
    probs, labels, novelty = _exchangeable(60, seed=0)
    rare = labels < 2  # no validation wafer of C: its threshold is the marginal one, and says so
    cal = calibrate_triage(probs[rare], labels[rare], novelty[rare], CLASSES, set_alpha=0.1)
    assert cal["marginal_classes"] == ["C"] and 0 < cal["class_thresholds"][2] < 1
    with pytest.raises(ValueError, match="there are none"):
        calibrate_triage(probs[:0], labels[:0], novelty[:0], CLASSES)
    with pytest.raises(ValueError, match="reject_novelty"):
        calibrate_triage(probs, labels, novelty, CLASSES, review_novelty=0.01, reject_novelty=0.02)


def test_the_export_carries_the_head_and_the_engine_triages_every_prediction(fitted, tiny_project, tmp_path):
    predictor, _ = fitted
    train = WaferArrays.from_parquet(tiny_project / "data/processed/train.parquet")
    val = WaferArrays.from_parquet(tiny_project / "data/processed/val.parquet")
    test = WaferArrays.from_parquet(tiny_project / "data/processed/test.parquet")
    # ~50 validation wafers: the smallest p-value is 1/51, so REJECT needs a level above it
    head, cal = fit_triage(
        predictor,
        (train.grids, train.labels),
        (val.grids, val.labels),
        list(WAFER_CLASSES),
        stages=(1, 3),
        review_novelty=0.1,
        reject_novelty=0.05,
    )
    report = export_onnx(
        predictor,
        tmp_path,
        val.grids,
        test.grids,
        test.labels,
        calibration_size=16,
        max_int8_f1_drop=1.0,
        novelty_head=head,
        triage=cal,
    )
    assert report["parity"]["passed"] and report["parity"]["max_abs_diff_novelty"] < 1e-3
    engine = InferenceEngine.from_path(tmp_path / "model.onnx", threads=1)
    results = engine.predict([disc(30, 30, [(15, 15)]), _reticle(test.grids[:1])[0]])
    for r in results:
        assert r["triage"]["decision"] in ("PASS", "REVIEW", "REJECT") and r["triage"]["reason"]
    assert results[1]["triage"]["novelty"] > np.quantile(cal["novelty_reference"], 0.99)
    assert results[1]["triage"]["decision"] == "REJECT"
