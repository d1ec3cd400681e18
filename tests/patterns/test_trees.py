"""The pattern trees: ONNX reproduces scikit-learn, the blend is what it says, files are checked."""

import json

import numpy as np
import pytest

from waferflow.classes import CLASSES
from waferflow.patterns.config import PatternsConfig
from waferflow.patterns.features import FEATURE_NAMES
from waferflow.patterns.trees import (
    META_FILE,
    TREES_FILE,
    PatternClassifier,
    fit_trees,
    parity,
    served_class,
    trees_to_onnx,
)

N_FEATURES = len(FEATURE_NAMES)


def _data(classes: list[int], n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(classes, n)
    x = rng.normal(size=(len(y), N_FEATURES))
    x[:, : len(classes)] += 3 * np.eye(len(classes))[np.searchsorted(classes, y)]
    return x, y


def _save(folder, model, classes: list[int], weight: float = 0.5, features=FEATURE_NAMES, class_weights=None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TREES_FILE).write_bytes(trees_to_onnx(model, N_FEATURES).SerializeToString())
    meta = {
        "enabled": True,
        "unet_weight": weight,
        "classes": [CLASSES[k] for k in classes],
        "features": list(features),
        "fitted_on": len(classes) * 60,
        "trees": 0,
        **({"class_weights": class_weights} if class_weights is not None else {}),
    }
    (folder / META_FILE).write_text(json.dumps(meta))
    return meta


def test_onnx_trees_reproduce_scikit_learn_on_unseen_wafers():
    x, y = _data(list(range(9)))
    model = fit_trees(x, y, PatternsConfig(max_iter=30, min_samples_leaf=10, bags=1))
    x_new, _ = _data(list(range(9)), n=30, seed=1)
    report = parity(model, trees_to_onnx(model, N_FEATURES).SerializeToString(), x_new)
    assert report["class_mismatches"] == 0 and report["max_abs_diff"] < 1e-5 and report["wafers"] == 270


def test_a_class_without_training_wafers_gets_probability_zero_in_its_column(tmp_path):
    present = [0, 2, 3, 4, 5, 6, 7, 8]  # no Donut
    x, y = _data(present)
    model = fit_trees(x, y, PatternsConfig(max_iter=20, min_samples_leaf=10, bags=1))
    _save(tmp_path, model, present)
    trees = PatternClassifier.from_dir(tmp_path)
    probs = trees.proba_features(x)
    assert probs.shape == (len(x), 9) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs[:, CLASSES.index("Donut")] == 0).all()
    assert np.allclose(probs[:, present], model.predict_proba(x), atol=1e-5)


def test_the_blend_is_the_weighted_mean_of_the_two(tmp_path):
    x, y = _data(list(range(9)))
    model = fit_trees(x, y, PatternsConfig(max_iter=10, min_samples_leaf=10, bags=1))
    _save(tmp_path, model, list(range(9)), weight=0.25)
    trees = PatternClassifier.from_dir(tmp_path)
    unet = np.full((len(x), 9), 1 / 9, np.float32)
    tree_probs = trees.proba_features(x)
    assert np.allclose(trees.mix(unet, tree_probs), 0.25 * unet + 0.75 * tree_probs, atol=1e-7)


def test_class_weights_scale_the_blend_and_keep_each_row_a_distribution(tmp_path):
    x, y = _data(list(range(9)))
    model = fit_trees(x, y, PatternsConfig(max_iter=10, min_samples_leaf=10, bags=1))
    _save(tmp_path, model, list(range(9)), weight=0.25, class_weights={"Loc": 2.0})
    trees = PatternClassifier.from_dir(tmp_path)
    loc = CLASSES.index("Loc")
    unet = np.full((len(x), 9), 1 / 9, np.float32)
    tree_probs = trees.proba_features(x)
    plain = 0.25 * unet + 0.75 * tree_probs
    factors = np.ones(9)
    factors[loc] = 2.0
    expected = plain * factors / (plain * factors).sum(1, keepdims=True)
    got = trees.mix(unet, tree_probs)
    assert np.allclose(got, expected, atol=1e-6) and np.allclose(got.sum(1), 1, atol=1e-5)
    # Loc gains where it was a close second, and only Loc: no other class wins a wafer it lost
    changed = got.argmax(1) != plain.argmax(1)
    assert (got.argmax(1)[changed] == loc).all()
    # a wafer the blend gives Loc 0.3 and Center 0.4 becomes Loc (0.6 against 0.4 before renormalising)
    tie = np.zeros((1, 9), np.float32)
    tie[0, [loc, CLASSES.index("Center"), CLASSES.index("none")]] = 0.3, 0.4, 0.3
    assert trees.mix(tie, tie).argmax() == loc and plain.dtype == got.dtype
    assert "Loc x 2" in served_class(trees)


@pytest.mark.parametrize("bad", [{"Lock": 2.0}, {"Loc": 0.0}, {"Loc": -1.0}, {"Loc": float("nan")}])
def test_class_weights_of_no_class_or_no_positive_factor_are_refused(bad):
    with pytest.raises(ValueError, match="class_weights"):
        PatternsConfig(class_weights=bad)


def test_trees_of_other_features_or_a_missing_stage_are_refused(tmp_path):
    x, y = _data(list(range(9)))
    model = fit_trees(x, y, PatternsConfig(max_iter=5, min_samples_leaf=10, bags=1))
    _save(tmp_path / "old", model, list(range(9)), features=[*FEATURE_NAMES[:-1], "something_else"])
    with pytest.raises(ValueError, match="other pattern features"):
        PatternClassifier.from_dir(tmp_path / "old")
    with pytest.raises(FileNotFoundError, match="dvc repro patterns"):
        PatternClassifier.from_dir(tmp_path / "nothing")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / META_FILE).write_text(json.dumps({"enabled": False}))
    assert PatternClassifier.from_dir(tmp_path / "off") is None


def test_bagged_trees_are_one_onnx_ensemble_of_their_mean_logits():
    x, y = _data(list(range(9)))
    bagged = fit_trees(x, y, PatternsConfig(max_iter=10, min_samples_leaf=10, bags=3))
    x_new, _ = _data(list(range(9)), n=30, seed=1)
    report = parity(bagged, trees_to_onnx(bagged, N_FEATURES).SerializeToString(), x_new)
    assert report["class_mismatches"] == 0 and report["max_abs_diff"] < 1e-5
    assert len(bagged.members) == 3 and bagged.n_trees == 3 * 10 * 9
    logits = np.stack([m.decision_function(x_new) for m in bagged.members])
    assert np.allclose(bagged.decision_function(x_new), logits.mean(0))
    assert not np.allclose(logits[0], logits[1])  # each bag saw its own bootstrap sample
    assert all(list(m.classes_) == list(range(9)) for m in bagged.members)  # ... of every class


def test_one_bag_is_one_fit_on_every_map():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _data(list(range(9)))
    cfg = PatternsConfig(max_iter=10, min_samples_leaf=10, bags=1)
    plain = HistGradientBoostingClassifier(
        max_iter=10,
        learning_rate=cfg.learning_rate,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=10,
        l2_regularization=cfg.l2_regularization,
        class_weight="balanced",
        early_stopping=False,
        random_state=0,
    ).fit(x, y)
    assert np.allclose(fit_trees(x, y, cfg).predict_proba(x), plain.predict_proba(x))


def _with_density(folder, weight: float, density_weight: float, lines: bool = False) -> PatternClassifier:
    """Trees and a width-4 density CNN (untrained) in ``folder``, as the patterns stage writes them."""
    import torch

    from waferflow.patterns.density import DensityEnsemble, DensityNet, density_to_onnx, picture_channels

    x, y = _data(list(range(9)))
    model = fit_trees(x, y, PatternsConfig(max_iter=10, min_samples_leaf=10, bags=1))
    meta = _save(folder, model, list(range(9)), weight=weight, class_weights={"Loc": 2.0})
    torch.manual_seed(0)
    channels = picture_channels(lines)
    net = DensityEnsemble([DensityNet(4, channels=channels)])
    (folder / "cnn.onnx").write_bytes(density_to_onnx(net, channels, (16, 16)))
    meta["density"] = {"file": "cnn.onnx", "weight": density_weight, "sigma": 1.5, "picture": [16, 16]}
    if lines:
        meta["density"]["lines"] = True  # a patterns.json written before stop 48 has no such key
    (folder / META_FILE).write_text(json.dumps(meta))
    return PatternClassifier.from_dir(folder)


def test_the_density_cnn_takes_its_share_from_the_trees(tmp_path):
    from waferflow.patterns.density import density_picture

    served = _with_density(tmp_path, weight=0.3, density_weight=0.2)
    rng = np.random.default_rng(3)
    grids = np.where(rng.random((5, 32, 32)) < 0.2, 2, 1).astype(np.uint8)
    unet = rng.dirichlet(np.ones(9), 5).astype(np.float32)
    parts = served.components(grids)
    assert list(parts) == ["patterns", "density_cnn"]
    cnn = served.density_session.run(["probabilities"], {"pictures": density_picture(grids, 1.5, (16, 16))})[0]
    assert np.allclose(parts["density_cnn"], cnn, atol=1e-6)
    plain = 0.3 * unet + 0.2 * cnn + 0.5 * parts["patterns"]
    factors = np.where(np.array(CLASSES) == "Loc", 2.0, 1.0)
    expected = plain * factors / (plain * factors).sum(1, keepdims=True)
    assert np.allclose(served.blend(unet, grids), expected, atol=1e-6)
    with pytest.raises(ValueError, match="serves the density CNN"):
        served.mix(unet, parts["patterns"])
    assert served_class(served).startswith("0.3 x U-Net + 0.2 x density CNN + 0.5 x pattern trees")


def test_a_density_cnn_with_line_channels_is_fed_the_pictures_it_was_fitted_on(tmp_path):
    from waferflow.patterns.density import density_picture

    served = _with_density(tmp_path, weight=0.3, density_weight=0.2, lines=True)
    grids = np.where(np.random.default_rng(5).random((3, 32, 32)) < 0.2, 2, 1).astype(np.uint8)
    pictures = density_picture(grids, 1.5, (16, 16), lines=True)
    assert pictures.shape[1] == 6
    expected = served.density_session.run(["probabilities"], {"pictures": pictures})[0]
    assert np.allclose(served.proba_density(grids), expected, atol=1e-6)
    assert served.proba_density(grids[:0]).shape == (0, 9)
    with pytest.raises(ValueError, match="32 x 32 dies"):  # pooled differently, it would read other pictures
        served.proba_density(np.ones((2, 64, 64), np.uint8))


def test_a_blend_without_the_cnn_refuses_its_probabilities(tmp_path):
    x, y = _data(list(range(9)))
    _save(tmp_path, fit_trees(x, y, PatternsConfig(max_iter=5, min_samples_leaf=10, bags=1)), list(range(9)))
    trees = PatternClassifier.from_dir(tmp_path)
    probs = trees.proba_features(x[:2])
    assert trees.proba_density(np.ones((2, 32, 32), np.uint8)) is None
    with pytest.raises(ValueError, match="no density CNN"):
        trees.mix(probs, probs, probs)


def test_the_shares_of_u_net_and_cnn_leave_the_trees_a_share():
    PatternsConfig(unet_weight=0.3, density_cnn={"weight": 0.7})
    with pytest.raises(ValueError, match="exceed 1"):
        PatternsConfig(unet_weight=0.4, density_cnn={"weight": 0.7})
