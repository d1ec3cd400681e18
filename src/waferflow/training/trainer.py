"""Build the Lightning Trainer from configuration and fit; devices never appear in model code.

``train.accelerator``, ``devices``, ``num_nodes``, ``strategy`` and ``precision`` go straight to
``lightning.Trainer``: the same call trains on a 2-core CPU (``auto``/1) and on multi-GPU,
multi-node clusters (``gpu``/8/4/``ddp``, launched by torchrun or SLURM).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from waferflow.models.config import ModelConfig
from waferflow.registry.tracking import MlflowConfig, configure_mlflow, resolved_tracking_uri
from waferflow.training.data import WaferDataModule
from waferflow.training.config import TrainConfig
from waferflow.training.lightning_module import WaferLitModule

__all__ = ["fit", "EpochLog", "load_initial_state"]


class EpochLog(Callback):
    """One flushed line per epoch (losses, validation macro-F1, time, estimate to the end) for logs
    without a terminal — Airflow task logs, CI, ``dvc repro > log`` — where a progress bar shows nothing."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # after the epoch's validation
        if not trainer.is_global_zero:
            return
        done, total = trainer.current_epoch + 1, trainer.max_epochs
        elapsed = time.perf_counter() - self.started
        m = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k in ("train_loss_epoch", "val_loss", "val_macro_f1")
        }
        print(
            f"epoch {done}/{total}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in m.items())
            + f" ({elapsed / done:.0f} s/epoch, about {elapsed / done * (total - done) / 60:.0f} min left)",
            flush=True,
        )


def load_initial_state(net, state: dict) -> None:
    """Start ``net`` from ``state``; a different architecture is a clear error, not a partial load."""
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise RuntimeError(
            "train.init_from: its weights do not fit model in params.yaml (same encoder, depth and decoder "
            f"channels needed): {str(exc).splitlines()[0]}"
        ) from None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data_dir: Path,
    out_dir: Path,
    mlflow_cfg: MlflowConfig,
    root: Path = Path("."),
    run_tags: dict[str, str] | None = None,
    extra_train: Sequence[Path] = (),
    init_state: dict | None = None,
) -> dict:
    """Train on ``data_dir/{train,val}.parquet``; the best checkpoint (val macro-F1) lands in ``out_dir``.
    ``init_state`` (a ``WaferUNet`` state dict of the same architecture) replaces the random init.

    Returns a summary (on every rank; only rank 0 has the MLflow run id).
    """
    L.seed_everything(train_cfg.seed, workers=True)
    dm = WaferDataModule(
        data_dir,
        train_cfg.batch_size,
        train_cfg.num_workers,
        train_cfg.augment,
        train_cfg.seed,
        extra_train=extra_train,
    )
    module = WaferLitModule(model_cfg, train_cfg, dm.class_weights())
    if init_state is not None:
        load_initial_state(module.net, init_state)
    configure_mlflow(mlflow_cfg, root)
    logger = MLFlowLogger(
        experiment_name=mlflow_cfg.experiment,
        tracking_uri=resolved_tracking_uri(mlflow_cfg, root),
        run_name="train",
        tags=run_tags or {},
    )
    checkpoint = ModelCheckpoint(
        dirpath=out_dir,
        filename="best",
        monitor="val_macro_f1",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    trainer = L.Trainer(
        accelerator=train_cfg.accelerator,
        devices=train_cfg.devices,
        num_nodes=train_cfg.num_nodes,
        strategy=train_cfg.strategy,
        precision=train_cfg.precision,
        max_epochs=train_cfg.max_epochs,
        deterministic=train_cfg.deterministic,
        logger=logger,
        log_every_n_steps=10,
        callbacks=[
            checkpoint,
            EarlyStopping("val_macro_f1", mode="max", patience=train_cfg.early_stopping_patience),
            LearningRateMonitor("epoch"),
            *([] if sys.stdout.isatty() else [EpochLog()]),
        ],
        enable_progress_bar=sys.stdout.isatty(),
        default_root_dir=out_dir,
        enable_model_summary=False,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    summary = {
        "best_val_macro_f1": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        "epochs_trained": trainer.current_epoch,
        "train_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "checkpoint": str(checkpoint.best_model_path),
        "global_rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "run_id": logger.run_id if trainer.is_global_zero else None,
    }
    if trainer.is_global_zero and not checkpoint.best_model_path:
        raise RuntimeError("training produced no checkpoint (no validation epoch completed)")
    return summary
