"""Novelty score: how unlike every known wafer a wafer is, from the classifier's own encoder.

A density of the known wafers in feature space, as anomalib's DFM/PaDiM and Lee et al.
("A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial
Attacks", NeurIPS 2018) build it: at each chosen encoder stage the feature map is pooled to its
per-channel mean and standard deviation, and a class-conditional Gaussian with one shared
(Ledoit–Wolf shrunk) covariance is fitted on the training split. A wafer's distance at a stage
is its smallest squared Mahalanobis distance to a class mean; its log is standardised by the
training wafers' own, and the novelty score is the largest over the stages. Shallow stages see
die-level texture (a reticle grid of failing rows, a new background), the deepest sees the
pattern's meaning: ``benchmarks/open_set.py`` measures each.

:class:`NoveltyHead` is a plain ``nn.Module`` over the encoder's feature list, so the export
puts it in the same ONNX graph as the classifier (one encoder pass serves both), and
:func:`novelty_heatmap` localises the unusual dies at one stage for the explanation picture.

Example:
    >>> import numpy as np
    >>> from waferflow.models.config import ModelConfig
    >>> from waferflow.models.predictor import WaferPredictor
    >>> from waferflow.models.wafer_unet import WaferUNet
    >>> predictor = WaferPredictor(WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8))))
    >>> rng = np.random.default_rng(0)
    >>> grids = rng.choice(np.array([1, 2], np.uint8), size=(60, 32, 32), p=[0.9, 0.1])
    >>> head = fit_novelty(predictor, grids, np.arange(60) % 3, stages=(1, 3))
    >>> novelty_scores(predictor, head, grids[:4]).shape
    (4,)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn
from tqdm.auto import tqdm

from waferflow.models.encoding import encode_grids
from waferflow.models.predictor import WaferPredictor

__all__ = [
    "NoveltyHead",
    "TriagedPredictor",
    "fit_novelty",
    "load_head",
    "HEAD_FILE",
    "novelty_scores",
    "novelty_heatmap",
    "pool_stage",
]


HEAD_FILE = "novelty_head.pt"  # beside model.onnx in an export (and in the version's onnx/ artifacts)


def load_head(path: str | Path) -> "NoveltyHead | None":
    """The head saved at ``path`` (:meth:`NoveltyHead.state`), or None when there is none (an
    export from before the triage). Tensors only: nothing is unpickled."""
    path = Path(path)
    return NoveltyHead.from_state(torch.load(path, weights_only=True)) if path.is_file() else None


def pool_stage(feature: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation of a stage's feature map ``(N, C, H, W)`` →
    ``(N, 2C)``: where the pattern is does not matter, what it looks like does."""
    mean = feature.mean(dim=(2, 3))
    var = (feature - mean[:, :, None, None]).pow(2).mean(dim=(2, 3))
    return torch.cat([mean, torch.sqrt(var + 1e-12)], dim=1)


class NoveltyHead(nn.Module):
    """Novelty score ``(N,)`` from the encoder's feature list (see the module doc).

    Per stage ``s`` the buffers hold the class means already whitened (``means_s @ whiten_s``),
    the whitening ``whiten_s`` (``whiten_s @ whiten_s.T`` = the shared precision matrix) and the
    location and scale of the training wafers' log distance.
    """

    def __init__(
        self,
        stages: tuple[int, ...],
        means: list[torch.Tensor],
        whiten: list[torch.Tensor],
        loc: list[float],
        scale: list[float],
    ) -> None:
        super().__init__()
        self.stages = tuple(int(s) for s in stages)
        for i, (m, w) in enumerate(zip(means, whiten)):
            self.register_buffer(
                f"means_{i}", torch.as_tensor(m, dtype=torch.float32) @ torch.as_tensor(w, dtype=torch.float32)
            )
            self.register_buffer(f"whiten_{i}", torch.as_tensor(w, dtype=torch.float32))
        self.register_buffer("loc", torch.tensor(loc, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def stage_scores(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Standardised log Mahalanobis distance at each stage, ``(N, len(stages))``."""
        scores = []
        for i, s in enumerate(self.stages):
            z = pool_stage(features[s]) @ getattr(self, f"whiten_{i}")
            d = (z[:, None, :] - getattr(self, f"means_{i}")[None]).pow(2).sum(-1).min(dim=1).values
            scores.append(torch.log(d + 1e-6))
        return (torch.stack(scores, dim=1) - self.loc) / self.scale

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.stage_scores(features).max(dim=1).values

    def state(self) -> dict:
        """Everything to rebuild the head (:meth:`from_state`), as tensors (``torch.load``
        with ``weights_only=True`` reads it back; nothing is unpickled)."""
        return {"stages": torch.tensor(self.stages), **{k: v.clone() for k, v in self.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict) -> "NoveltyHead":
        stages = tuple(int(s) for s in state["stages"])
        head = cls.__new__(cls)
        nn.Module.__init__(head)
        head.stages = stages
        for key, value in state.items():
            if key != "stages":
                head.register_buffer(key, value.float())
        return head


def _on_wafer(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Which cells of a ``size`` feature map lie on the wafer (input channel 0), ``(N, h, w)``."""
    from torch.nn import functional as F

    return F.adaptive_max_pool2d(x[:, :1], size)[:, 0] > 0.5


@torch.inference_mode()
def _stage_features(
    predictor: WaferPredictor,
    grids: np.ndarray,
    stages: tuple[int, ...],
    batch_size: int,
    progress: bool,
    desc: str,
    local_per_wafer: int = 16,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Pooled features per stage, and a sample of on-wafer local feature vectors of the first."""
    encoder = predictor.eval().net.net.encoder
    device = predictor.temperature.device
    gen = torch.Generator().manual_seed(0)
    out: list[list[np.ndarray]] = [[] for _ in stages]
    local = []
    for start in tqdm(range(0, len(grids), batch_size), desc=desc, disable=not progress, unit="batch"):
        x = encode_grids(grids[start : start + batch_size]).to(device)
        features = encoder(x)
        for acc, s in zip(out, stages):
            acc.append(pool_stage(features[s]).float().cpu().numpy())
        first = features[stages[0]].float().cpu()
        cells = first.permute(0, 2, 3, 1)[_on_wafer(x.cpu(), first.shape[2:])]
        pick = torch.randperm(len(cells), generator=gen)[: local_per_wafer * len(x)]
        local.append(cells[pick].numpy())
    return [np.concatenate(a) for a in out], np.concatenate(local)


def fit_novelty(
    predictor: WaferPredictor,
    grids: np.ndarray,
    labels: np.ndarray,
    stages: tuple[int, ...] = (1, 3, 5),
    batch_size: int = 256,
    progress: bool = False,
) -> NoveltyHead:
    """Fit the head on known wafers (the training split: grids at the model input size, labels
    0..8): class means, shared Ledoit–Wolf covariance and the log-distance scale per stage."""
    depth = len(predictor.net.net.encoder.out_channels) - 1
    bad = [s for s in stages if not 1 <= s <= depth]
    if bad or not stages:
        raise ValueError(f"novelty stages (triage.stages) must be encoder stages 1..{depth}, got {list(stages)}")
    labels = np.asarray(labels)
    known = np.unique(labels)
    feats, local = _stage_features(predictor, grids, tuple(stages), batch_size, progress, "novelty features")
    means, whiten, logs = [], [], []
    for f in feats:
        mu = np.stack([f[labels == c].mean(0) for c in known])
        cov = LedoitWolf().fit(f - mu[np.searchsorted(known, labels)]).covariance_
        w = np.linalg.cholesky(np.linalg.inv(cov))  # precision = w @ w.T
        z, zm = f @ w, mu @ w
        d = ((z[:, None, :] - zm[None]) ** 2).sum(-1).min(1)
        means.append(mu), whiten.append(w), logs.append(np.log(d + 1e-6))
    loc = [float(v.mean()) for v in logs]
    scale = [float(max(v.std(), 1e-6)) for v in logs]
    head = NoveltyHead(
        tuple(stages), [torch.from_numpy(m) for m in means], [torch.from_numpy(w) for w in whiten], loc, scale
    )
    # The heatmap's Gaussian: local feature vectors at the first stage, as PaDiM models patches.
    local_mean = local.mean(0)
    local_whiten = np.linalg.cholesky(np.linalg.inv(LedoitWolf().fit(local).covariance_))
    d = (((local - local_mean) @ local_whiten) ** 2).sum(1)
    head.register_buffer("local_mean", torch.from_numpy(local_mean).float())
    head.register_buffer("local_whiten", torch.from_numpy(local_whiten).float())
    head.register_buffer("local_range", torch.tensor(np.quantile(d, [0.5, 0.999]), dtype=torch.float32))
    return head


@torch.inference_mode()
def novelty_scores(
    predictor: WaferPredictor,
    head: NoveltyHead,
    grids: np.ndarray,
    batch_size: int = 256,
    per_stage: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Novelty ``(N,)`` of grids at the model input size (``per_stage``: ``(N, stages)``)."""
    encoder = predictor.eval().net.net.encoder
    device = predictor.temperature.device
    head = head.to(device)
    out = []
    for start in tqdm(range(0, len(grids), batch_size), desc="novelty", disable=not progress, unit="batch"):
        features = encoder(encode_grids(grids[start : start + batch_size]).to(device))
        out.append((head.stage_scores(features) if per_stage else head(features)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(head.stages)) if per_stage else 0, np.float32)


@torch.inference_mode()
def novelty_heatmap(predictor: WaferPredictor, head: NoveltyHead, grids: np.ndarray) -> np.ndarray:
    """Where each wafer is unusual, ``(N, H, W)`` at the input size, 0 off the wafer: at the
    head's first stage, each cell's squared Mahalanobis distance under the Gaussian of known
    wafers' local features (PaDiM's anomaly map, one Gaussian for all positions: a pattern may
    sit anywhere), scaled so that 0 is a median known cell and 1 a cell as unusual as the top
    0.1 % of known cells (clipped)."""
    from torch.nn import functional as F

    x = encode_grids(grids)
    feat = predictor.eval().net.net.encoder(x)[head.stages[0]].float()
    z = torch.einsum("nchw,cd->ndhw", feat - head.local_mean[None, :, None, None], head.local_whiten)
    lo, hi = head.local_range
    cell = ((z.pow(2).sum(1, keepdim=True) - lo) / (hi - lo)).clamp(0, 1)
    heat = F.interpolate(cell, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return (heat * (x[:, 0] > 0.5)).numpy()


def fit_triage(
    predictor: WaferPredictor,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    classes: list[str],
    stages: tuple[int, ...] = (1, 3, 5),
    set_alpha: float = 0.05,
    review_novelty: float = 0.02,
    reject_novelty: float = 0.002,
    progress: bool = False,
    val_probs: np.ndarray | None = None,
) -> tuple[NoveltyHead, dict]:
    """The novelty head fitted on ``train`` (grids, labels) and the triage calibrated on ``val``
    (:func:`waferflow.triage.decide.calibrate_triage`): what the novelty stage makes. The
    conformal sets are calibrated on ``val_probs`` when given (the served class probabilities,
    e.g. the U-Net blended with the pattern trees), else on the predictor's own."""
    from waferflow.triage.decide import calibrate_triage

    head = fit_novelty(predictor, *train, stages=stages, progress=progress)
    grids, labels = val
    calibration = calibrate_triage(
        predictor.predict(grids)[0] if val_probs is None else val_probs,
        labels,
        novelty_scores(predictor, head, grids),
        classes,
        set_alpha,
        review_novelty,
        reject_novelty,
    )
    return head, calibration


class TriagedPredictor(nn.Module):
    """The served module with triage: ``forward(x)`` → ``(class_probs, mask, class_logits,
    novelty)``, the predictor's outputs and the head's score from the same encoder pass."""

    def __init__(self, predictor: WaferPredictor, head: NoveltyHead) -> None:
        super().__init__()
        self.predictor, self.head = predictor, head

    @property
    def temperature(self) -> torch.Tensor:
        return self.predictor.temperature

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        features, class_probs, mask, class_logits = self.predictor.forward_features(x)
        return class_probs, mask, class_logits, self.head(features)

    @torch.no_grad()
    def run(self, grids: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, ...]:
        """:meth:`forward` over die grids at the model input size, as numpy arrays."""
        self.eval()
        device = self.temperature.device
        outs: list[list[np.ndarray]] = [[], [], [], []]
        for start in range(0, len(grids), batch_size):
            for out, value in zip(outs, self(encode_grids(grids[start : start + batch_size]).to(device))):
                out.append(value.float().cpu().numpy() if value.is_floating_point() else value.cpu().numpy())
        return tuple(np.concatenate(out) for out in outs)
