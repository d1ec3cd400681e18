import numpy as np
import pytest

from waferflow.classes import CLASSES
from waferflow.evaluation.intervals import lot_intervals
from waferflow.evaluation.metrics import classification_metrics


def _lots_right_or_wrong(n_lots: int, per_lot: int = 5, seed: int = 0):
    """Three classes; a lot's wafers are all classified right or all wrong (70 % of the lots right)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n_lots * per_lot)
    right = np.repeat(rng.random(n_lots) < 0.7, per_lot)
    return y, np.where(right, y, (y + 1) % 3), np.repeat(np.arange(n_lots), per_lot)


def test_the_interval_holds_the_figure_and_narrows_with_more_lots():
    y, pred, lots = _lots_right_or_wrong(400)
    point = classification_metrics(y, np.eye(len(CLASSES))[pred])
    wide = lot_intervals(y[:200], pred[:200], lots[:200])  # 40 lots
    narrow = lot_intervals(y, pred, lots)  # 400 lots
    low, high = narrow["macro_f1"]
    assert low < point["macro_f1"] < high
    for c in ("Center", "Donut", "Edge-Loc"):
        assert narrow["recall"][c][0] < point["per_class"][c]["recall"] < narrow["recall"][c][1]
    assert narrow["recall"].keys() == {"Center", "Donut", "Edge-Loc"}  # only the classes the maps hold
    assert (high - low) < 0.6 * (wide["macro_f1"][1] - wide["macro_f1"][0])  # ~1/sqrt(10) expected
    assert narrow["lots"] == 400 and wide["lots"] == 40


def test_lots_whose_wafers_err_together_widen_the_interval_over_wafers_drawn_alone():
    y, pred, lots = _lots_right_or_wrong(200)
    by_lot = lot_intervals(y, pred, lots)["macro_f1"]
    by_wafer = lot_intervals(y, pred, np.arange(len(y)))["macro_f1"]  # each wafer its own lot
    assert (by_lot[1] - by_lot[0]) > 1.5 * (by_wafer[1] - by_wafer[0])  # ~sqrt(5) for lots of 5


def test_same_seed_same_interval_and_lengths_must_agree():
    y, pred, lots = _lots_right_or_wrong(50)
    assert lot_intervals(y, pred, lots, seed=3) == lot_intervals(y, pred, lots, seed=3)
    with pytest.raises(ValueError, match="differ in length: 250, 250, 249"):
        lot_intervals(y, pred, lots[:-1])


def test_one_lot_has_no_interval_and_one_lot_alike_in_all_resamples_is_the_figure():
    y = np.array([0, 1, 1, 2])
    alone = lot_intervals(y, y, np.zeros(4))
    assert alone["macro_f1"] is None and alone["recall"] == {"Center": None, "Donut": None, "Edge-Loc": None}
    same = lot_intervals(np.tile(y, 3), np.tile(y, 3), np.repeat([0, 1, 2], 4), n_resamples=100)
    assert same["macro_f1"] == [1.0, 1.0] and "reason" not in same


def test_paired_difference_of_two_models_on_the_same_lots():
    y, pred, lots = _lots_right_or_wrong(200)
    same = lot_intervals(y, pred, lots, baseline=pred)
    assert same["of"] == "difference to the baseline" and same["macro_f1"] == [0.0, 0.0]
    better = pred.copy()
    better[:100] = y[:100]  # the first 20 lots put right: a small gain on every resample that draws them
    paired = lot_intervals(y, better, lots, baseline=pred)
    assert 0 < paired["macro_f1"][0] < paired["macro_f1"][1]
    alone = lot_intervals(y, better, lots)["macro_f1"]  # each model's own spread is far wider than the pair's
    assert (paired["macro_f1"][1] - paired["macro_f1"][0]) < 0.5 * (alone[1] - alone[0])
    with pytest.raises(ValueError, match="baseline has 10 predictions for 1000 wafers"):
        lot_intervals(y, pred, lots, baseline=pred[:10])
