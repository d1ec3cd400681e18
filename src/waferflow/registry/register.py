"""Log the trained model to its MLflow run and register it as a new version with an alias.

The first version ever registered becomes ``champion``; every later one ``challenger``
(the promotion gate decides whether a challenger replaces the champion).

Example:
    >>> info = log_and_register(predictor, "waferflow-wafer-classifier", run_id, tags={})  # doctest: +SKIP
    >>> info["alias"]  # doctest: +SKIP
    'champion'
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.models import infer_signature
from mlflow.types.schema import ParamSchema, ParamSpec

import waferflow
from waferflow.models.predictor import WaferPredictor
from waferflow.patterns.trees import PatternClassifier, served_class
from waferflow.registry.pyfunc import PATTERNS_ARTIFACT, WaferPyfunc, pip_requirements, save_weights

__all__ = ["log_and_register", "tag_version", "CHAMPION", "CHALLENGER"]

CHAMPION, CHALLENGER = "champion", "challenger"


def tag_version(model_name: str, version: str, tags: dict) -> None:
    """Set tags on a registered model version (values as text, cut to MLflow's 5000 characters)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value)[:5000])


def log_and_register(
    predictor: WaferPredictor,
    model_name: str,
    run_id: str,
    tags: dict[str, str],
    example_grids: np.ndarray,
    patterns_dir: str | Path | None = None,
) -> dict:
    """Log ``predictor`` as a pyfunc model with signature and input example, register, set the alias.

    ``patterns_dir``: the patterns stage's output (``data/patterns``); its trees (and density CNN)
    travel in the model and the pyfunc serves their blend with the U-Net, as the engine does (None,
    or a folder whose trees are disabled: the U-Net alone)."""
    example = np.asarray(example_grids[:2], np.uint8)
    unet, masks = predictor.predict(example)
    trees = PatternClassifier.from_dir(patterns_dir) if patterns_dir is not None else None
    probs = unet if trees is None else trees.blend(unet, example)
    shapes = [ParamSpec(key, "long", [], shape=(-1,)) for key in ("heights", "widths")]  # per wafer; [] = as given
    signature = infer_signature(example, {"class_probs": probs, "unet_probs": unet, "mask": masks})
    signature.params = ParamSchema(shapes)
    artifacts = {PATTERNS_ARTIFACT: str(patterns_dir)} if trees is not None else {}
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        weights = save_weights(predictor, Path(tmp) / "weights.pt")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=WaferPyfunc(),
            artifacts={"weights": str(weights), **artifacts},
            code_paths=[str(Path(waferflow.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=model_name,
        )
    client = MlflowClient()
    version = str(info.registered_model_version)
    tag_version(model_name, version, {**tags, "served_class": served_class(trees)})
    aliases = client.get_registered_model(model_name).aliases
    alias = CHALLENGER if CHAMPION in aliases else CHAMPION
    client.set_registered_model_alias(model_name, alias, version)
    return {"model_name": model_name, "version": version, "alias": alias, "model_uri": info.model_uri}
