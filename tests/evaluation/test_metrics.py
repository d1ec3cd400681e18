import numpy as np

from waferflow.data.arrays import IGNORE_INDEX
from waferflow.evaluation.metrics import classification_metrics, mask_metrics


def test_mask_metrics_on_a_hand_built_case():
    true = np.array([[[0, 1, 1, 2, IGNORE_INDEX]]])
    pred = np.array([[[0, 1, 0, 2, 5]]])
    m = mask_metrics(true, pred)
    assert m["n_dies"] == 4
    assert m["per_class"]["Center"] == {"iou": 0.5, "dice": round(2 / 3, 6), "dies": 2}
    assert m["per_class"]["Donut"]["iou"] == 1.0
    assert m["mean_iou"] == 0.75 and "Edge-Loc" not in m["per_class"]
    assert m["per_class"]["background"]["iou"] == 0.5
    assert mask_metrics(np.full((1, 2, 2), IGNORE_INDEX), np.zeros((1, 2, 2)))["mean_iou"] is None


def test_classification_metrics():
    y = np.array([0, 0, 1, 8])
    probs = np.eye(9)[[0, 1, 1, 8]] * 0.9 + 0.01
    m = classification_metrics(y, probs)
    assert m["accuracy"] == 0.75
    assert m["per_class"]["Center"]["recall"] == 0.5 and m["per_class"]["Donut"]["precision"] == 0.5
    assert abs(m["macro_f1"] - np.mean([2 / 3, 2 / 3, 1.0])) < 1e-6
    assert m["confusion_matrix"][0][1] == 1 and set(m["roc_auc"]) == {"Center", "Donut", "none"}
