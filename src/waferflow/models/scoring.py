"""Score a pool of wafers with the trained model, in one encoder pass per batch.

The class head of :class:`~waferflow.models.WaferUNet` is smp's ``ClassificationHead``: global
average pool → flatten → dropout → linear, on the encoder's deepest features. So one encoder
pass per wafer gives everything the strategies need, without running the decoder:

* ``emb``: the pooled encoder features (the coreset embedding, 512-d for resnet18);
* ``probs``: softmax of the head over the predictor's temperature in eval mode (dropout off),
  exactly the served model's class probabilities;
* ``mc_probs``: ``mc_samples`` passes of the head with dropout *on* (MC dropout for BALD). Only
  the head is sampled — the encoder has no dropout — so BALD costs one linear layer per pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from waferflow.models.encoding import encode_grids
from waferflow.models.predictor import WaferPredictor, as_predictor
from waferflow.models.wafer_unet import WaferUNet

__all__ = ["PoolScores", "score_pool"]


@dataclass
class PoolScores:
    probs: np.ndarray  # (N, C)
    mc_probs: np.ndarray  # (T, N, C), T = 0 when no MC passes were asked for
    emb: np.ndarray  # (N, D)


@torch.inference_mode()
def score_pool(
    model: WaferPredictor | WaferUNet,
    grids: np.ndarray,
    mc_samples: int = 0,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    desc: str = "scoring",
) -> PoolScores:
    """Probabilities, MC-dropout probabilities and embeddings of ``grids`` (N, H, W) uint8."""
    predictor = as_predictor(model).eval()
    temperature = float(predictor.temperature)
    model = predictor.net.net
    head = model.classification_head
    dropout_p = next((m.p for m in head if isinstance(m, torch.nn.Dropout)), 0.0)
    linear = next(m for m in head if isinstance(m, torch.nn.Linear))
    device = predictor.temperature.device
    gen = torch.Generator().manual_seed(seed)
    probs, mc, embs = [], [], []
    for start in tqdm(range(0, len(grids), batch_size), desc=desc, disable=not progress, unit="batch"):
        x = encode_grids(grids[start : start + batch_size]).to(device)
        emb = model.encoder(x)[-1].mean(dim=(2, 3)).float().cpu()
        embs.append(emb.numpy())
        linear = linear.cpu() if device.type != "cpu" else linear
        probs.append(F.softmax(linear(emb) / temperature, dim=1).numpy())
        if mc_samples:
            if dropout_p <= 0:
                raise ValueError("MC dropout needs model.classifier_dropout > 0")
            keep = (torch.rand((mc_samples, *emb.shape), generator=gen) >= dropout_p).float() / (1 - dropout_p)
            mc.append(F.softmax(linear(emb.unsqueeze(0) * keep) / temperature, dim=-1).numpy())
    return PoolScores(
        np.concatenate(probs), np.concatenate(mc, axis=1) if mc else np.zeros((0, len(grids), 0)), np.concatenate(embs)
    )
