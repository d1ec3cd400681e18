"""Explanations: class-activation maps on the wafer's own grid, the deletion check, the index of
similar wafers."""

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import disc
from waferflow.explain.cam import class_activation_maps
from waferflow.explain.faithfulness import deletion_check
from waferflow.explain.similar import WaferIndex, precision_at_k
from waferflow.models.config import ModelConfig
from waferflow.models.predictor import WaferPredictor
from waferflow.models.wafer_unet import WaferUNet


@pytest.fixture
def predictor():
    torch.manual_seed(0)
    return WaferPredictor(WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8)))).eval()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_maps_lie_on_each_wafers_own_grid_for_the_class_asked(predictor, method):
    grids = [disc(20, 26, fails=[(10, c) for c in range(5, 15)]), disc(41, 37, fails=[(3, 18), (20, 20)])]
    maps, explained = class_activation_maps(predictor, grids, (32, 32), method=method)
    for grid, heat in zip(grids, maps):
        assert heat.shape == grid.shape and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() <= 1 and not heat[grid == 0].any()  # nothing off the wafer
    assert explained.shape == (2,) and set(explained) <= set(range(9))
    _, asked = class_activation_maps(predictor, grids, (32, 32), method=method, classes=[3, 7])
    assert asked.tolist() == [3, 7]


def test_the_default_explains_the_class_the_predictor_predicts(predictor):
    from waferflow.data.resize import resize_grid

    grids = [disc(30, 30, fails=[(r, 15) for r in range(4, 26)]), disc(30, 30, fails=[(15, 15)])]
    _, explained = class_activation_maps(predictor, grids, (32, 32))
    probs, _ = predictor.predict(np.stack([resize_grid(g, (32, 32)) for g in grids]))
    assert explained.tolist() == probs.argmax(1).tolist()


class LeftHalf:
    """Class 0's probability grows with the fail dies in the left half of a 16 x 16 grid."""

    def predict(self, grids):
        left = (np.asarray(grids)[:, :, :8] == 2).sum(axis=(1, 2))
        probs = np.zeros((len(grids), 9))
        probs[:, 0] = left / (left + 4.0)
        probs[:, 8] = 1 - probs[:, 0]
        return probs, None


def test_deletion_of_the_dies_a_faithful_map_ranks_first_costs_more_than_random():
    grids = [disc(16, 16, fails=[(r, c) for r in range(4, 12) for c in range(2, 14)]) for _ in range(6)]
    grids.append(disc(16, 16, fails=[(8, 8)]))  # too few fail dies to rank: left out
    faithful, reversed_ = np.zeros((16, 16)), np.zeros((16, 16))
    faithful[:, :8], reversed_[:, 8:] = 1, 1
    good = deletion_check(LeftHalf(), grids, [faithful] * 7, (16, 16), classes=[0] * 7)
    bad = deletion_check(LeftHalf(), grids, [reversed_] * 7, (16, 16), classes=[0] * 7)
    assert good["wafers"] == 6 and good["top_beats_random"] == 1.0
    assert good["mean_drop_top"] > 2 * good["mean_drop_random"] > 0
    assert bad["mean_drop_top"] < 1e-9 < bad["mean_drop_random"] and bad["top_beats_random"] == 0.0
    assert deletion_check(LeftHalf(), grids[-1:], [faithful], (16, 16)) == {"wafers": 0, "fraction": 0.2}


def _index() -> WaferIndex:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 5
    emb = np.concatenate([centres[k] + rng.normal(0, 0.3, (10, 8)) for k in range(3)])
    wafers = pd.DataFrame(
        {
            "lot_id": [f"L{k}-{i % 2}" for k in range(3) for i in range(10)],
            "wafer_id": [str(i) for _ in range(3) for i in range(10)],
            "label": [c for c in ("Scratch", "Donut", "Loc") for _ in range(10)],
        }
    )
    return WaferIndex(emb, wafers, {"model_version": "4"})


def test_the_index_answers_the_nearest_labeled_wafers_and_survives_a_round_trip(tmp_path):
    index = _index()
    query = np.eye(3, 8)[[0, 2]] * 5
    near = index.neighbours(query, k=5)
    assert [n["label"] for n in near[0]] == ["Scratch"] * 5 and [n["label"] for n in near[1]] == ["Loc"] * 5
    assert all(a["distance"] <= b["distance"] for a, b in zip(near[0], near[0][1:]))
    assert precision_at_k(index, query, ["Scratch", "Loc"], k=10) == 1.0
    assert precision_at_k(index, query, ["Donut", "Donut"], k=10) == 0.0
    own_lot_left_out = index.neighbours(query[:1], k=5, exclude_lots=["L0-0"])[0]
    assert {n["lot_id"] for n in own_lot_left_out} == {"L0-1"}
    loaded = WaferIndex.load(index.save(tmp_path / "index"))
    assert loaded.info["model_version"] == "4" and len(loaded) == 30
    assert loaded.neighbours(query, k=3) == index.neighbours(query, k=3)
    with pytest.raises(FileNotFoundError, match="embeddings.npy"):
        WaferIndex.load(tmp_path)
