"""Boosted trees on pattern features, as ONNX, blended with the U-Net's class probabilities.

scikit-learn's ``HistGradientBoostingClassifier`` (class-balanced) is fitted on the
:mod:`~waferflow.patterns.features` of the generated training split, ``bags`` times on
class-stratified bootstrap samples (:class:`BaggedTrees`: the mean of their logits; one fit
without resampling when ``bags`` is 1). All bags are served as one ONNX
``TreeEnsembleClassifier`` (``ai.onnx.ml``) run by ONNX Runtime, never as a pickle: a model file
is data, and loading it runs no code. :func:`trees_to_onnx` writes the fitted trees node for
node (thresholds in float64, the features too, so ONNX and scikit-learn split every wafer the
same way); :func:`parity` proves it on wafers before the stage keeps the file.

:class:`PatternClassifier` is what evaluation, the triage calibration, the gate and the engine
call: ``blend(unet_probs, grids, shapes)`` = ``w * unet + (1 - w) * trees`` (``unet_weight``), or
with the density CNN of :mod:`~waferflow.patterns.density` ``w * unet + wc * cnn + (1 - w - wc) *
trees``, times the ``class_weights`` decision weights, each row renormalised.

Example:
    >>> import numpy as np
    >>> from waferflow.patterns.config import PatternsConfig
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(300, 5)), np.arange(300) % 3
    >>> x[:, 0] += y
    >>> trees = fit_trees(x, y, PatternsConfig(max_iter=20, min_samples_leaf=5, bags=2))
    >>> report = parity(trees, trees_to_onnx(trees, 5).SerializeToString(), x)
    >>> report["class_mismatches"], report["max_abs_diff"] < 1e-5
    (0, True)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from waferflow.classes import CLASSES
from waferflow.patterns.config import PatternsConfig
from waferflow.patterns.features import FEATURE_NAMES, grid_features

__all__ = [
    "TREES_FILE",
    "META_FILE",
    "PatternClassifier",
    "BaggedTrees",
    "make_trees",
    "fit_trees",
    "trees_to_onnx",
    "parity",
    "onnx_session",
    "probability_parity",
    "served_class",
]

TREES_FILE = "trees.onnx"
META_FILE = "patterns.json"
ML_OPSET = 3  # ai.onnx.ml: TreeEnsembleClassifier with *_as_tensor (float64) attributes


def _boosted(cfg: PatternsConfig, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=cfg.max_iter,
        learning_rate=cfg.learning_rate,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf,
        l2_regularization=cfg.l2_regularization,
        class_weight="balanced",
        early_stopping=False,
        random_state=seed,
    )


class BaggedTrees:
    """``cfg.bags`` class-balanced ``HistGradientBoostingClassifier`` s, each fitted on a bootstrap
    sample drawn within every class (so each bag sees every class, in its own numbers), served as
    the softmax of their mean logits. Bagging evens out what one fit learns from the quirks of
    one generated data set: on the real dev lots 5 bags gave +0.01 to +0.02 macro-F1 over one fit
    on the same maps, on three generator seeds (README, *Pattern features beside the U-Net*).
    ``bags: 1`` is one fit on all the maps, no resampling."""

    def __init__(self, cfg: PatternsConfig) -> None:
        self.cfg = cfg
        self.members: list = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> "BaggedTrees":
        x, y = np.asarray(x, np.float64), np.asarray(y)
        rng = np.random.default_rng(self.cfg.seed)
        by_class = [np.flatnonzero(y == k) for k in np.unique(y)]
        self.members = []
        for bag in range(self.cfg.bags):
            if self.cfg.bags == 1:
                idx = np.arange(len(y))
            else:
                idx = np.sort(np.concatenate([rng.choice(rows, len(rows), replace=True) for rows in by_class]))
            self.members.append(_boosted(self.cfg, self.cfg.seed + bag).fit(x[idx], y[idx]))
        return self

    @property
    def classes_(self) -> np.ndarray:
        return self.members[0].classes_

    @property
    def n_trees(self) -> int:
        return sum(int(m.n_iter_ * m.n_trees_per_iteration_) for m in self.members)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """The bags' mean logits, ``(N, classes)``."""
        x = np.asarray(x, np.float64)
        return np.mean([m.decision_function(x) for m in self.members], axis=0)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        return softmax(self.decision_function(x), axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(x).argmax(1)]


def make_trees(cfg: PatternsConfig) -> BaggedTrees:
    """The :class:`BaggedTrees` of ``cfg``, not fitted yet."""
    return BaggedTrees(cfg)


def fit_trees(x: np.ndarray, y: np.ndarray, cfg: PatternsConfig) -> BaggedTrees:
    """:func:`make_trees` fitted on ``x, y``."""
    return make_trees(cfg).fit(x, y)


def trees_to_onnx(model: BaggedTrees, n_features: int) -> onnx.ModelProto:
    """Fitted :class:`BaggedTrees` of >= 3 classes as one ONNX ``TreeEnsembleClassifier``: input
    ``features`` (N, n_features) float64, outputs ``label`` (N,) and ``probabilities`` (N, classes
    in ``model.classes_`` order): softmax of the bags' mean baseline plus every tree's leaf / bags."""
    n_classes = len(model.classes_)
    if n_classes < 3 or any(int(m.n_trees_per_iteration_) != n_classes for m in model.members):
        raise ValueError(f"expected a classifier of >= 3 classes, got {n_classes}")
    scale = 1.0 / len(model.members)
    a: dict[str, list] = {k: [] for k in ("tree", "node", "feature", "value", "mode", "true", "false", "missing")}
    leaves: dict[str, list] = {"tree": [], "node": [], "class": [], "weight": []}
    trees = (per_class for member in model.members for per_class in member._predictors)  # one tree per class
    for iteration, per_class in enumerate(trees):
        for k, predictor in enumerate(per_class):
            tree = iteration * n_classes + k
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not exported (the pattern features are numeric)")
            for i, node in enumerate(nodes):
                leaf = bool(node["is_leaf"])
                a["tree"].append(tree)
                a["node"].append(i)
                a["feature"].append(0 if leaf else int(node["feature_idx"]))
                a["value"].append(0.0 if leaf else float(node["num_threshold"]))
                a["mode"].append("LEAF" if leaf else "BRANCH_LEQ")  # x <= threshold goes left, as in scikit-learn
                a["true"].append(0 if leaf else int(node["left"]))
                a["false"].append(0 if leaf else int(node["right"]))
                a["missing"].append(0 if leaf else int(node["missing_go_to_left"]))
                if leaf:
                    leaves["tree"].append(tree)
                    leaves["node"].append(i)
                    leaves["class"].append(k)
                    leaves["weight"].append(float(node["value"]) * scale)
    double = TensorProto.DOUBLE
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["features"],
        ["label", "probabilities"],
        domain="ai.onnx.ml",
        classlabels_int64s=list(range(n_classes)),
        nodes_treeids=a["tree"],
        nodes_nodeids=a["node"],
        nodes_featureids=a["feature"],
        nodes_values_as_tensor=helper.make_tensor("nodes_values", double, [len(a["value"])], a["value"]),
        nodes_modes=a["mode"],
        nodes_truenodeids=a["true"],
        nodes_falsenodeids=a["false"],
        nodes_missing_value_tracks_true=a["missing"],
        class_treeids=leaves["tree"],
        class_nodeids=leaves["node"],
        class_ids=leaves["class"],
        class_weights_as_tensor=helper.make_tensor("class_weights", double, [len(leaves["weight"])], leaves["weight"]),
        base_values_as_tensor=helper.make_tensor(
            "base_values",
            double,
            [n_classes],
            np.mean([np.asarray(m._baseline_prediction, np.float64).ravel() for m in model.members], 0).tolist(),
        ),
        post_transform="SOFTMAX",
    )
    graph = helper.make_graph(
        [node],
        "pattern_trees",
        [helper.make_tensor_value_info("features", double, [None, n_features])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes]),
        ],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return proto


def onnx_session(model: bytes | str | Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session of ``model`` (a file or its bytes); ``threads``: its intra-op threads (None:
    ONNX Runtime's default, every core)."""
    source = model if isinstance(model, bytes) else str(model)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def probability_parity(got: np.ndarray, ref: np.ndarray) -> dict:
    """Two models' ``(N, classes)`` probabilities on the same wafers: max |difference|, class mismatches."""
    return {
        "wafers": int(len(ref)),
        "max_abs_diff": float(np.abs(got - ref).max()) if len(ref) else 0.0,
        "class_mismatches": int((got.argmax(1) != ref.argmax(1)).sum()),
    }


def parity(model, onnx_bytes: bytes, x: np.ndarray) -> dict:
    """ONNX against scikit-learn on features ``x``: max |probability difference|, class mismatches."""
    got = onnx_session(onnx_bytes).run(["probabilities"], {"features": np.asarray(x, np.float64)})[0]
    return probability_parity(got, model.predict_proba(np.asarray(x, np.float64)))


class PatternClassifier:
    """The exported trees (``trees.onnx``), the density CNN beside them when the stage fitted one,
    and their blend with the U-Net's probabilities.

    ``meta`` is ``patterns.json``: ``unet_weight``, ``class_weights`` (absent in files written before
    stop 42: none), ``classes`` (the trees' classes, a subset of :data:`~waferflow.classes.CLASSES`
    when a class had no training wafer), ``features`` and, with ``patterns.density_cnn``,
    ``density`` (its ``file`` beside the trees', ``weight``, ``sigma``, ``picture`` size). ``threads``:
    the intra-op threads of both ONNX sessions (None: every core), as the engine sets its graph's.
    """

    def __init__(self, onnx_path: str | Path, meta: dict, threads: int | None = None) -> None:
        if list(meta["features"]) != list(FEATURE_NAMES):
            raise ValueError(
                f"{onnx_path}: fitted on other pattern features ({len(meta['features'])}) than this "
                f"waferflow computes ({len(FEATURE_NAMES)}): run `dvc repro patterns`"
            )
        self.path = Path(onnx_path)
        self.session = onnx_session(self.path, threads)
        self.unet_weight = float(meta["unet_weight"])
        self.class_weights = {str(k): float(v) for k, v in meta.get("class_weights", {}).items()}
        self._factors = np.array([self.class_weights.get(c, 1.0) for c in CLASSES], np.float32)
        self.columns = [CLASSES.index(c) for c in meta["classes"]]
        self.density = meta.get("density")
        self.density_path = self.path.with_name(self.density["file"]) if self.density else None
        self.density_session = onnx_session(self.density_path, threads) if self.density else None
        self.density_weight = float(self.density["weight"]) if self.density else 0.0
        self.meta = meta

    @classmethod
    def from_dir(cls, folder: str | Path) -> "PatternClassifier | None":
        """The patterns stage's output in ``folder``; None when it fitted no trees (disabled)."""
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} is missing: run the patterns stage (dvc repro patterns)")
        meta = json.loads(meta_path.read_text())
        return cls(folder / TREES_FILE, meta) if meta.get("enabled") else None

    def proba_features(self, x: np.ndarray) -> np.ndarray:
        """``(N, 9)`` class probabilities of the trees from pattern features ``x``."""
        out = np.zeros((len(x), len(CLASSES)), np.float32)
        if len(x):
            out[:, self.columns] = self.session.run(["probabilities"], {"features": np.asarray(x, np.float64)})[0]
        return out

    def proba(self, grids: np.ndarray, shapes=None, progress: bool = False) -> np.ndarray:
        """The trees' ``(N, 9)`` probabilities for model-input ``grids`` of original ``shapes``."""
        return self.proba_features(grid_features(grids, shapes, progress=progress))

    def proba_density(self, grids: np.ndarray) -> np.ndarray | None:
        """The density CNN's ``(N, 9)`` probabilities for model-input ``grids`` (it reads them at
        the model's input size); None when this blend has no CNN."""
        if self.density_session is None:
            return None
        from waferflow.patterns.density import density_picture, run_density_onnx

        grids = np.asarray(grids)
        if not len(grids):
            return np.zeros((0, len(CLASSES)), np.float32)
        picture = tuple(self.density["picture"])
        if tuple(grids.shape[1:]) != (2 * picture[0], 2 * picture[1]):
            raise ValueError(
                f"the density CNN reads model-input grids of {2 * picture[0]} x {2 * picture[1]} dies "
                f"(pictures at half that size), got {grids.shape[1]} x {grids.shape[2]}"
            )
        pictures = density_picture(grids, self.density["sigma"], picture, self.density.get("lines", False))
        return run_density_onnx(self.density_session, pictures)

    def mix(
        self, unet_probs: np.ndarray, tree_probs: np.ndarray, density_probs: np.ndarray | None = None
    ) -> np.ndarray:
        """``unet_weight`` x U-Net + the CNN's ``weight`` x ``density_probs`` + the rest x trees;
        with ``class_weights``, times their factors and each row renormalised to sum to 1."""
        if (density_probs is None) != (self.density_session is None):
            raise ValueError(
                "this blend serves the density CNN: pass its probabilities (proba_density)"
                if density_probs is None
                else "this blend has no density CNN: its probabilities cannot be mixed in"
            )
        w, wc = self.unet_weight, self.density_weight
        mixed = w * np.asarray(unet_probs, np.float32) + (1 - w - wc) * tree_probs
        if density_probs is not None:
            mixed = mixed + wc * np.asarray(density_probs, np.float32)
        mixed = mixed.astype(np.float32)
        if not self.class_weights:
            return mixed
        weighted = mixed * self._factors
        return (weighted / weighted.sum(axis=-1, keepdims=True)).astype(np.float32)

    def components(self, grids: np.ndarray, shapes=None, progress: bool = False) -> dict[str, np.ndarray]:
        """Each model's own probabilities beside the U-Net's: ``patterns`` (the trees) and, when
        served, ``density_cnn``, in :meth:`mix`'s order."""
        parts = {"patterns": self.proba(grids, shapes, progress)}
        if self.density_session is not None:
            parts["density_cnn"] = self.proba_density(grids)
        return parts

    def blend(self, unet_probs: np.ndarray, grids: np.ndarray, shapes=None, progress: bool = False) -> np.ndarray:
        """The served class probabilities: :meth:`mix` of ``unet_probs`` and :meth:`components`."""
        return self.mix(unet_probs, *self.components(grids, shapes, progress).values())


def served_class(patterns: PatternClassifier | None) -> str:
    """What a figure of the served class is of, in words (for metrics files and reports)."""
    if patterns is None:
        return "U-Net alone (patterns disabled)"
    w, wc = patterns.unet_weight, patterns.density_weight
    weights = "".join(f", {c} x {f:g}" for c, f in patterns.class_weights.items())
    cnn = f"{wc:g} x density CNN + " if patterns.density_session is not None else ""
    return (
        f"{w:g} x U-Net + {cnn}{1 - w - wc:g} x pattern trees (class probabilities{weights}"
        f"{', renormalised' if weights else ''})"
    )
