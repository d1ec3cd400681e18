"""GAN augmentation of rare classes: train the WGAN-GP on the training split, generate, gate, report.

For each class with fewer than ``min_count`` training maps the generator makes
``ceil((target_count - count) * oversample)`` candidates, each on the die area of a training map
drawn at random from all classes (:mod:`waferflow.gan.wgan`: the outline is given, the defect
pattern generated); the quality gate (outline, class
fidelity, novelty — :mod:`waferflow.gan.quality`) drops what fails, with the reason counted; at
most ``target_count - count`` kept maps per class are written as canonical records
(``source = "gan"``, no defect mask, the generator's checkpoint hash in ``attrs``). The train
stage learns the class head from them and ignores the mask loss (no mask = ignore index).

Only the training split is ever read: the GAN and the fidelity classifier never see val or test.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from waferflow.models.scoring import score_pool
from waferflow.classes import CLASSES
from waferflow.data.arrays import IGNORE_INDEX, WaferArrays
from waferflow.data.records import WaferRecord, write_records
from waferflow.fileio import atomic_path
from waferflow.gan.config import GanAugmentConfig
from waferflow.gan.quality import OutlineStats, distribution_distances, nearest_hamming, repair_outline
from waferflow.gan.wgan import WganGp, die_area
from waferflow.quickfit import fit_quick
from waferflow.viz.wafer_plots import save_wafer_grid

__all__ = ["GanAugmentConfig", "run_augment"]

DROP_REASONS = ("outline", "fidelity", "novelty")


class _Grids(torch.utils.data.Dataset):
    def __init__(self, grids: np.ndarray, labels: np.ndarray) -> None:
        self.grids, self.labels = torch.from_numpy(grids), torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"grid": self.grids[i], "label": self.labels[i]}


def train_gan(grids: np.ndarray, labels: np.ndarray, cfg: GanAugmentConfig, progress: bool = True) -> WganGp:
    """Fit the WGAN-GP for ``cfg.gan_steps`` generator steps (``n_critic`` critic steps each) on the given
    (training) maps, drawn class-balanced."""
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    model = WganGp(
        size=grids.shape[1],
        latent_dim=cfg.latent_dim,
        gen_width=cfg.gen_width,
        critic_width=cfg.critic_width,
        lr=cfg.lr,
        betas=cfg.betas,
        n_critic=cfg.n_critic,
        gp_lambda=cfg.gp_lambda,
    )
    # Class-balanced draws: a class with 30 maps is as present in the critic's batches as one with 3000,
    # so the rare classes the stage generates are the ones the GAN learns, on the patterns all classes share.
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(float)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    sampler = WeightedRandomSampler(
        weights,
        num_samples=cfg.gan_steps * cfg.n_critic * cfg.batch_size,
        replacement=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    loader = DataLoader(_Grids(grids, labels), batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    trainer = L.Trainer(
        accelerator="cpu" if not torch.cuda.is_available() else "auto",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
    )
    trainer.fit(model, loader)
    model.train_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return model


def run_augment(
    grids: np.ndarray, labels: np.ndarray, cfg: GanAugmentConfig, out_dir: Path, progress: bool = True
) -> dict:
    """Generate, gate and write synthetic maps for the rare classes of a training split.

    ``grids`` (N, H, W) uint8 and ``labels`` (N,) class indices are the training split. Writes
    ``synthetic.parquet``, ``generator.pt`` (when a GAN was trained) and ``gallery/<class>.png``
    in ``out_dir``; returns the report for ``metrics/augment.json``.
    """
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    need = {c: cfg.target_count - n for c, n in counts.items() if n < cfg.min_count and cfg.target_count > n}
    report: dict = {
        "train_counts": counts,
        "min_count": cfg.min_count,
        "target_count": cfg.target_count,
        "classes": {},
        "generator": None,
    }
    records: list[WaferRecord] = []
    if need:
        gan = train_gan(grids, labels, cfg, progress=progress)
        ckpt = out_dir / "generator.pt"
        with atomic_path(ckpt) as tmp:
            torch.save({"state_dict": gan.state_dict(), "hparams": dict(gan.hparams)}, tmp)
        version = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:12]
        report["generator"] = {"checkpoint": str(ckpt), "version": version, "train_metrics": gan.train_metrics}
        reference = fit_quick(
            WaferArrays(grids, np.full(grids.shape, IGNORE_INDEX, np.int64), labels),
            steps=cfg.reference_steps,
            seed=cfg.seed,
        )
        real_emb = score_pool(reference, grids).emb
        outline = OutlineStats.from_real(grids)
        rng = torch.Generator().manual_seed(cfg.seed)
        pick = np.random.default_rng(cfg.seed)
        for cls, n_need in need.items():
            k = CLASSES.index(cls)
            n_gen = math.ceil(n_need * cfg.oversample)
            area = die_area(torch.from_numpy(grids[pick.integers(0, len(grids), n_gen)]))  # any product's layout
            fake = gan.generate(torch.full((n_gen,), k, dtype=torch.long), area, generator=rng).numpy()
            fake = np.stack([repair_outline(g) for g in fake])
            reasons: list[str | None] = [f"outline: {r}" if r else None for r in outline.check(fake)]
            scores = score_pool(reference, fake)
            for i, p in enumerate(scores.probs[:, k]):
                if reasons[i] is None and p < cfg.min_confidence:
                    reasons[i] = f"fidelity: p({cls}) = {p:.2f} < {cfg.min_confidence}"
            nearest = nearest_hamming(fake, grids[labels == k])
            for i, d in enumerate(nearest):
                if reasons[i] is None and d <= cfg.min_novelty:
                    reasons[i] = f"novelty: nearest training map differs in {d:.3f} of cells"
            keep = [i for i, r in enumerate(reasons) if r is None][:n_need]
            dropped = {r: sum(1 for x in reasons if x and x.startswith(r)) for r in DROP_REASONS}
            kept = fake[keep]
            report["classes"][cls] = {
                "train_count": counts[cls],
                "needed": n_need,
                "generated": n_gen,
                "passed": n_gen - sum(dropped.values()),
                "kept": len(keep),
                "dropped": dropped,
                "distances": distribution_distances(
                    grids[labels == k], kept, real_emb[labels == k], scores.emb[keep] if keep else None
                ),
            }
            for j, g in enumerate(kept):
                records.append(
                    WaferRecord(
                        g,
                        lot_id=f"GAN-{cls}",
                        wafer_id=str(j + 1),
                        label=cls,
                        source="gan",
                        source_ref=f"{ckpt.name}#{version}",
                        split_hint="train",
                        attrs={"gan_version": version, "seed": cfg.seed},
                    )
                )
            _gallery(
                grids[labels == k][:8],
                kept[:8],
                fake[[i for i, r in enumerate(reasons) if r][:8]],
                cls,
                out_dir / "gallery" / f"{cls}.png",
            )
    write_records(records, out_dir / "synthetic.parquet")
    report["kept_total"] = len(records)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _gallery(real: np.ndarray, kept: np.ndarray, dropped: np.ndarray, cls: str, path: Path) -> None:
    rows = [
        [(g, None, name if c == 0 else None) for c, g in enumerate(grids[:8])]
        for name, grids in (("real", real), ("generated, kept", kept), ("generated, dropped", dropped))
    ]
    save_wafer_grid(
        rows, path, f"{cls}: real training maps vs WGAN-GP samples", cols=8, cell=(1.5, 5 / 3), dpi=90, title_size=10
    )
