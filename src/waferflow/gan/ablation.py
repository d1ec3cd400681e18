"""Does GAN augmentation help the rare classes? An ablation on a deliberately starved training set.

From the pipeline's own split (``data/processed``: the same val and test splits as ``dvc repro``),
the rare WM-811K classes (Near-full, Donut, Random, Scratch) are cut to ``keep`` training maps
each (seeded by ``train.seed``). The augment stage's code (:func:`waferflow.gan.augment.run_augment`
with ``params.yaml → augment``) makes synthetic maps for them from that starved split only; the
model is then trained twice with the same seed, configuration and epochs — without and with the
synthetic maps — and both are evaluated on the same test split. Both fits are MLflow runs in the
experiment ``<mlflow.experiment>-ablation`` (tag ``ablation``); neither is registered, so the
pipeline's model registry is untouched.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from waferflow.classes import CLASSES
from waferflow.config import Params

__all__ = ["RARE", "starved_rows", "starve", "run_ablation", "ablation_table"]

RARE = ("Near-full", "Donut", "Random", "Scratch")


def starved_rows(labels: np.ndarray, keep: int, seed: int, classes=RARE) -> np.ndarray:
    """Sorted rows of ``labels`` left when each of ``classes`` is cut to at most ``keep`` maps (seeded)."""
    rng = np.random.default_rng(seed)
    drop: list[int] = []
    for cls in classes:
        idx = np.flatnonzero(labels == cls)
        drop += rng.choice(idx, size=max(0, len(idx) - keep), replace=False).tolist()
    return np.setdiff1d(np.arange(len(labels)), drop)


def starve(train: pd.DataFrame, keep: int, seed: int, classes=RARE) -> pd.DataFrame:
    """``train`` with each of ``classes`` cut to at most ``keep`` maps (seeded); other classes untouched."""
    rows = starved_rows(train["label"].to_numpy(), keep, seed, classes)
    return train.iloc[rows].reset_index(drop=True)


def run_ablation(
    params: Params, keep: int = 30, epochs: int = 15, root: Path = Path("."), progress: bool = True
) -> dict:
    """Run both arms; returns the result written to ``metrics/augment_ablation.json``."""
    import pyarrow as pa

    from waferflow.data.records import read_frame, write_records
    from waferflow.evaluation.metrics import classification_metrics
    from waferflow.gan.augment import run_augment
    from waferflow.models.predictor import WaferPredictor
    from waferflow.data.arrays import WaferArrays
    from waferflow.training.lightning_module import WaferLitModule
    from waferflow.training.trainer import fit

    processed = root / "data/processed"
    for name in ("train", "val", "test"):
        if not (processed / f"{name}.parquet").is_file():
            raise FileNotFoundError(f"{processed / f'{name}.parquet'} is missing: run `dvc repro split` first")
    train = starve(read_frame(processed / "train.parquet"), keep, params.train.seed)
    test = WaferArrays.from_parquet(processed / "test.parquet")
    started = time.perf_counter()
    arms: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="wf-ablation-"))
    try:
        write_records(pa.Table.from_pandas(train, preserve_index=False), work / "data/train.parquet")
        shutil.copy(processed / "val.parquet", work / "data/val.parquet")
        starved = WaferArrays.from_frame(train)
        gan = run_augment(starved.grids, starved.labels, params.augment, work / "augmented", progress=progress)
        gallery = root / "reports/figures/augment_ablation"
        if (work / "augmented/gallery").is_dir():
            shutil.copytree(work / "augmented/gallery", gallery, dirs_exist_ok=True)
        train_cfg = params.train.model_copy(update={"max_epochs": epochs})
        mlflow_cfg = params.mlflow.model_copy(update={"experiment": params.mlflow.experiment + "-ablation"})
        for arm, extra in (("without_synthetic", []), ("with_synthetic", [work / "augmented/synthetic.parquet"])):
            t0 = time.perf_counter()
            summary = fit(
                params.model,
                train_cfg,
                work / "data",
                work / arm,
                mlflow_cfg,
                root,
                run_tags={"ablation": arm, "rare_kept": str(keep)},
                extra_train=extra,
            )
            net = WaferLitModule.load_from_checkpoint(summary["checkpoint"], map_location="cpu").net
            probs, _ = WaferPredictor(net).predict(test.grids)
            rep = classification_metrics(test.labels, probs)
            arms[arm] = {
                "test_macro_f1": rep["macro_f1"],
                "rare_recall": {c: rep["per_class"][c]["recall"] for c in RARE},
                "rare_f1": {c: rep["per_class"][c]["f1"] for c in RARE},
                "train_maps": len(train) + (gan["kept_total"] if extra else 0),
                "epochs_trained": summary["epochs_trained"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "rare_classes_kept": keep,
        "seed": params.train.seed,
        "max_epochs": epochs,
        "starved_train_counts": {
            c: int(n) for c, n in train["label"].value_counts().reindex(list(CLASSES), fill_value=0).items()
        },
        "test_wafers": int(len(test)),
        "arms": arms,
        "gan": gan,
        "delta_macro_f1": round(
            arms["with_synthetic"]["test_macro_f1"] - arms["without_synthetic"]["test_macro_f1"], 4
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }


def ablation_table(result: dict) -> str:
    """The README's Markdown table of an ablation result."""
    lines = [
        "| arm | train maps | test macro-F1 | " + " | ".join(f"recall {c}" for c in RARE) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in RARE) + " |",
    ]
    for arm, a in result["arms"].items():
        lines.append(
            f"| {arm.replace('_', ' ')} | {a['train_maps']} | {a['test_macro_f1']:.3f} | "
            + " | ".join(f"{a['rare_recall'][c]:.2f}" for c in RARE)
            + " |"
        )
    return "\n".join(lines)
