"""The other novelty model #19 names: a variational autoencoder on die grids, against the density
head the pipeline keeps (``waferflow.triage.novelty``), on the same probes.

After ``make pipeline`` (``models/weights.pt``, ``data/novelty``). A convolutional VAE (Kingma &
Welling 2014; 2 × 64 × 64 input: wafer area, fail dies → latent 32 → Bernoulli logits of the
fail dies) is trained on the generated training split only (``--epochs``, Adam 1e-3, batch 128,
seed 0). A wafer's novelty is its reconstruction error: the mean binary cross-entropy over its
dies of the decoded latent mean; the per-die error is the VAE's heatmap. Measured, as in
``benchmarks/open_set.py`` (same probe seed, same sets):

* AUROC of the ``novel_pattern`` stream and of mixed two-pattern wafers against the generated test
  split, for the VAE, the density head, and the mean of their ranks (a combination);
* AUROC of the real test lots against the generated test split (with ``../shared/data``): how
  much of the sim-to-real shift each calls novel;
* the VAE's training time and its batch-1 scoring time on this machine.

    .venv/bin/python benchmarks/vae_novelty.py [--epochs 6]

Writes ``benchmarks/results/vae_novelty.json`` and ``vae_novelty.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from waferflow.config import load_params
from waferflow.data.arrays import WaferArrays
from waferflow.data.resize import resize_grid
from waferflow.evaluation.real_maps import real_arrays
from waferflow.fileio import write_json, write_text
from waferflow.models.encoding import encode_grids
from waferflow.monitoring.scenarios import mixed_pattern_wafers, stream
from waferflow.registry.pyfunc import load_weights
from waferflow.triage.novelty import NoveltyHead, novelty_scores

OUT = Path("benchmarks/results")
PROBE_SEED = 7  # benchmarks/open_set.py's


class WaferVAE(nn.Module):
    """Conv encoder 64 → 8 px, latent ``z``; the decoder mirrors it and returns fail-die logits."""

    def __init__(self, latent: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(2, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(), nn.Flatten(),
        )  # fmt: skip
        self.mu, self.logvar = nn.Linear(128 * 64, latent), nn.Linear(128 * 64, latent)
        self.expand = nn.Linear(latent, 128 * 64)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(129, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor, sample: bool = True):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        # The wafer outline is known (input channel 0): the decoder gets it, so only fails are modelled.
        area = F.adaptive_avg_pool2d(x[:, :1], 8)
        logits = self.decoder(torch.cat([self.expand(z).view(-1, 128, 8, 8), area], 1))[:, 0]
        return logits, mu, logvar


def die_errors(vae: WaferVAE, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per wafer the mean BCE over its dies, and the per-die BCE maps (0 off the wafer)."""
    vae.eval()
    scores, maps = [], []
    with torch.no_grad():
        for start in range(0, len(grids), batch_size):
            x = encode_grids(grids[start : start + batch_size])
            logits, _, _ = vae(x, sample=False)
            bce = F.binary_cross_entropy_with_logits(logits, x[:, 1], reduction="none") * x[:, 0]
            scores.append((bce.sum((1, 2)) / x[:, 0].sum((1, 2)).clamp_min(1)).numpy())
            maps.append(bce.numpy())
    return np.concatenate(scores), np.concatenate(maps)


def train_vae(grids: np.ndarray, epochs: int, seed: int = 0) -> tuple[WaferVAE, float]:
    torch.manual_seed(seed)
    vae = WaferVAE()
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(grids))
        total = 0.0
        for start in tqdm(range(0, len(order), 128), desc=f"VAE epoch {epoch + 1}/{epochs}", unit="batch"):
            x = encode_grids(grids[order[start : start + 128]])
            logits, mu, logvar = vae(x)
            rec = (F.binary_cross_entropy_with_logits(logits, x[:, 1], reduction="none") * x[:, 0]).sum((1, 2))
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
            loss = (rec + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(x)
        print(f"  epoch {epoch + 1}: negative ELBO {total / len(grids):.1f} per wafer", flush=True)
    return vae, time.perf_counter() - started


def _auroc(known: np.ndarray, novel: np.ndarray) -> float:
    return round(float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(novel))], np.r_[known, novel])), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--weights", type=Path, default=Path("models/weights.pt"))
    ap.add_argument("--novelty", type=Path, default=Path("data/novelty"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--probe-wafers", type=int, default=600)
    args = ap.parse_args()
    params = load_params(args.params)
    size = tuple(params.preprocess.image_size)
    torch.set_num_threads(min(4, os.cpu_count() or 1))

    def labeled(split: str) -> WaferArrays:
        a = WaferArrays.from_parquet(Path("data/processed") / f"{split}.parquet")
        return a.take(np.flatnonzero(a.labels >= 0))

    train, test = labeled("train"), labeled("test")
    vae, seconds = train_vae(train.grids, args.epochs)
    predictor = load_weights(args.weights).eval()
    head = NoveltyHead.from_state(torch.load(args.novelty / "head.pt", weights_only=True))

    sets = {"known (generated test)": test.grids}
    for name, records in {
        "novel_pattern": stream("novel_pattern", args.probe_wafers, PROBE_SEED, params.synth),
        "mixed_pattern": mixed_pattern_wafers(args.probe_wafers, PROBE_SEED, params.synth),
    }.items():
        sets[name] = np.stack([resize_grid(r.die_grid, size) for r in records])
    real, _ = real_arrays(Path(params.evaluate.real_data_dir), size)
    if real is not None:
        sets["real test lots"] = real["test"].grids
    scores = {
        name: {"vae": die_errors(vae, g)[0], "density": novelty_scores(predictor, head, g)} for name, g in sets.items()
    }
    known = scores.pop("known (generated test)")
    result: dict = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "epochs": args.epochs,
        "vae_train_seconds": round(seconds, 1),
        "auroc_vs_generated_test": {},
    }
    for name, s in scores.items():
        both = {k: np.r_[known[k], s[k]] for k in ("vae", "density")}
        ranks = (rankdata(both["vae"]) + rankdata(both["density"])) / 2
        n = len(known["vae"])
        result["auroc_vs_generated_test"][name] = {
            "vae": _auroc(known["vae"], s["vae"]),
            "density": _auroc(known["density"], s["density"]),
            "rank_mean": _auroc(ranks[:n], ranks[n:]),
        }
    x = np.ones((1, *size), np.uint8)
    t = []
    for _ in range(200):
        t0 = time.perf_counter()
        die_errors(vae, x)
        t.append(1000 * (time.perf_counter() - t0))
    result["vae_batch1_ms"] = round(float(np.median(t)), 2)
    write_json(OUT / "vae_novelty.json", result)
    lines = [
        f"Machine: {result['machine']}. VAE: {args.epochs} epochs on the generated training split in "
        f"{result['vae_train_seconds']} s; batch-1 score {result['vae_batch1_ms']} ms (torch).",
        "",
        "| AUROC vs the generated test split | VAE reconstruction error | density head (kept) | mean of ranks |",
        "| --- | --- | --- | --- |",
        *(
            f"| {k} | {v['vae']} | {v['density']} | {v['rank_mean']} |"
            for k, v in result["auroc_vs_generated_test"].items()
        ),
    ]
    write_text(OUT / "vae_novelty.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
