"""A small CNN on a texture-free fail-density picture of each wafer (issue #15, stop 45).

The U-Net reads die codes and learns generated die texture (background speckle, die size in
pixels) that WM-811K does not share: alone it scores 0.75 macro-F1 on the real dev lots. This
model never sees texture. :func:`density_picture` turns each model-input wafer into four
channels at half its size — the Gaussian-smoothed fail density over the wafer's own dies, the
same minus the wafer's own fail rate (a heavy background reads as 0), the wafer mask and the
radius from the wafer's centre; with ``lines``, two more that keep what is one die wide, a finer
density and :func:`line_response`, max-pooled — and :class:`DensityNet`, fitted on generated maps
(:func:`fit_density_net`), reads them; :func:`predict_density` averages the 8 wafer symmetries.
On the patterns stage's 27 000 own generated maps (and any fab-labeled wafers of the training
split beside them) it scores 0.80-0.83 alone on the real dev lots, 0.82-0.84 with ``lines``, and
0.849 (4 seeds averaged) on two draws of them, 54 000, in the same steps (``patterns.density_cnn.draws``,
stop 51; ``benchmarks/density_cnn.py``). The patterns stage fits ``patterns.density_cnn.seeds`` of
them (:func:`fit_density_ensemble`) and writes their mean over the 8 symmetries as one ONNX graph
(:func:`density_to_onnx`; ``density.onnx``, input ``pictures``, output ``probabilities``), which
:class:`~waferflow.patterns.trees.PatternClassifier` blends into the served class.

Example:
    >>> import numpy as np
    >>> grid = np.ones((64, 64), np.uint8)
    >>> grid[28:36, 28:36] = 2
    >>> x = density_picture(grid[None])
    >>> x.shape, bool(x[0, 0, 16, 16] > 0.5), bool(x[0, 0, 0, 0] < 0)
    ((1, 4, 32, 32), True, True)
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from waferflow.classes import CLASSES

__all__ = [
    "DENSITY_FILE",
    "density_picture",
    "line_kernels",
    "line_response",
    "picture_channels",
    "DensityNet",
    "DensityEnsemble",
    "symmetry",
    "fit_density_net",
    "fit_density_ensemble",
    "predict_density",
    "predict_ensemble",
    "run_density_onnx",
    "density_to_onnx",
]

DENSITY_FILE = "density.onnx"
ONNX_OPSET = 17
LINE_LENGTH = 7  # steps along each segment of line_response (7 dies; 5 on the diagonals)


def line_kernels(length: int = LINE_LENGTH, angles: int = 8) -> np.ndarray:
    """``(angles, length, length)`` 0/1 masks of straight segments through the centre at ``angles``
    evenly spaced directions (every 22.5 degrees by default), each the dies at ``t`` = -``length``
    // 2 ... ``length`` // 2 steps along its direction, rounded (``length`` dies; 5 of 7 on the
    diagonals, where two steps round to one die): a set the wafer's 8 symmetries map onto itself."""
    half = length // 2
    kernels = np.zeros((angles, length, length), np.float32)
    for a in range(angles):
        theta = np.pi * a / angles
        for t in range(-half, half + 1):
            kernels[a, half + round(t * np.sin(theta)), half + round(t * np.cos(theta))] = 1.0
    return kernels


def line_response(fails: np.ndarray, mask: np.ndarray, length: int = LINE_LENGTH) -> np.ndarray:
    """``(N, H, W)`` fail and wafer indicators -> the largest share of failing dies along any
    straight segment (:func:`line_kernels`) centred on each die, counting only segments with more
    than ``length // 2`` dies on the wafer (0 where none has): a scratch one die wide reads ~1
    along its length, a background of rate ``p`` mostly ~``p``."""
    half = length // 2
    pad = ((0, 0), (half, half), (half, half))
    f, m = np.pad(fails, pad), np.pad(mask, pad)
    h, w = fails.shape[1:]
    best = np.zeros(fails.shape, np.float32)
    for kernel in line_kernels(length):
        hits, dies = np.zeros(fails.shape, np.float32), np.zeros(fails.shape, np.float32)
        for r, c in zip(*np.nonzero(kernel), strict=True):
            hits += f[:, r : r + h, c : c + w]
            dies += m[:, r : r + h, c : c + w]
        np.maximum(best, np.where(dies > half, hits / np.maximum(dies, 1), 0), out=best)
    return best


def _smoothed_density(fails: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The fail density smoothed with a Gaussian of ``sigma`` dies, over the wafer's own dies."""
    smooth_mask = gaussian_filter(mask, (0, sigma, sigma))
    density = np.where(smooth_mask > 1e-3, gaussian_filter(fails, (0, sigma, sigma)) / np.maximum(smooth_mask, 1e-3), 0)
    return density * mask


def picture_channels(lines: bool = False) -> int:
    """Channels of :func:`density_picture`: 4, or 6 ``lines``."""
    return 6 if lines else 4


def density_picture(
    grids: np.ndarray, sigma: float = 1.5, out: int | tuple[int, int] = 32, lines: bool = False
) -> np.ndarray:
    """``(N, H, W)`` die codes (0 no die, 1 pass, 2 fail; ``H``, ``W`` divisible by ``out``, one
    size or ``(rows, columns)``) -> ``(N, 4, rows, columns)`` float32: fail density relative to the
    wafer's own fail rate, fail density, wafer mask, radius from the wafer's centre (in
    half-widths), each average-pooled. ``lines`` adds two channels that keep what is one die wide,
    each max-pooled and relative to the wafer's fail rate: the fail density smoothed with half
    ``sigma``, and :func:`line_response` (stop 48: the CNN alone 0.81 -> 0.83 on the real dev
    lots, Scratch recall 0.71 -> 0.80)."""
    grids = np.asarray(grids)
    out_h, out_w = (out, out) if isinstance(out, int) else (int(out[0]), int(out[1]))
    channels = picture_channels(lines)
    if grids.ndim == 3 and not len(grids):
        return np.zeros((0, channels, out_h, out_w), np.float32)
    if grids.ndim != 3 or grids.shape[1] % out_h or grids.shape[2] % out_w:
        raise ValueError(
            f"density_picture: grids of shape {grids.shape} are not (N, H, W) with H, W divisible by {out_h} x {out_w}"
        )
    pictures = []
    for start in range(0, len(grids), 2000):
        g = grids[start : start + 2000]
        mask = (g > 0).astype(np.float32)
        fails = (g == 2).astype(np.float32)
        density = _smoothed_density(fails, mask, sigma)
        dies = np.maximum(mask.sum((1, 2)), 1)
        rate = fails.sum((1, 2)) / dies
        rows, cols = np.mgrid[0 : g.shape[1], 0 : g.shape[2]].astype(np.float32)
        cy, cx = (mask * rows).sum((1, 2)) / dies, (mask * cols).sum((1, 2)) / dies
        radius = np.hypot(rows - cy[:, None, None], cols - cx[:, None, None]) / (g.shape[2] / 2)
        x = np.stack([(density - rate[:, None, None]) * mask, density, mask, radius * mask], 1)
        n, c, h, w = x.shape
        x = x.reshape(n, c, out_h, h // out_h, out_w, w // out_w).mean((3, 5))
        if lines:
            fine = _smoothed_density(fails, mask, sigma / 2)
            thin = np.stack([fine, line_response(fails, mask)], 1) - rate[:, None, None, None]
            thin = (thin * mask[:, None]).reshape(n, 2, out_h, h // out_h, out_w, w // out_w).max((3, 5))
            x = np.concatenate([x, thin], 1)
        pictures.append(x.astype(np.float32))
    return np.concatenate(pictures)


class DensityNet(nn.Module):
    """Three blocks of two 3 x 3 convolutions (``width``, 2 x, 4 x channels), 2 x 2 max-pooling
    between them, mean and max over the last block's map, dropout, one linear layer."""

    def __init__(self, width: int = 16, classes: int = len(CLASSES), channels: int = 4) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )

        self.blocks = nn.ModuleList([block(channels, width), block(width, 2 * width), block(2 * width, 4 * width)])
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i < len(self.blocks) - 1:
                x = F.max_pool2d(x, 2)
        return self.head(self.drop(torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)))


def symmetry(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th of the wafer's 8 symmetries (4 rotations, each mirrored or not)."""
    x = torch.rot90(x, k % 4, (2, 3))
    return torch.flip(x, (3,)) if k >= 4 else x


def fit_density_net(
    x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 8, width: int = 16, batch: int = 128
) -> DensityNet:
    """Cross-entropy (label smoothing 0.1), each class weighted by the inverse of its count when
    the classes of ``y`` are not balanced (a fab's labeled wafers beside the own maps; the own maps
    alone are balanced and need none); one random symmetry a batch, AdamW with a one-cycle rate;
    a progress line an epoch. The net reads as many channels as ``x`` has."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    counts = np.bincount(np.asarray(y), minlength=len(CLASSES))
    present = counts[counts > 0]
    weight = None
    if present.min() != present.max():
        weight = torch.from_numpy(np.where(counts > 0, len(y) / (len(present) * np.maximum(counts, 1)), 0.0)).float()
    net = DensityNet(width, channels=x.shape[1])
    steps = max(1, len(y) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y)).long()
    for epoch in range(epochs):
        net.train()
        order, total, t0 = rng.permutation(len(y)), 0.0, time.perf_counter()
        for s in range(steps):
            rows = torch.from_numpy(order[s * batch : (s + 1) * batch])
            logits = net(symmetry(xt[rows], int(rng.integers(8))))
            loss = F.cross_entropy(logits, yt[rows], weight=weight, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(
            f"  seed {seed} epoch {epoch + 1}/{epochs}: loss {total / steps:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return net.eval()


def predict_density(net: DensityNet, x: np.ndarray) -> np.ndarray:
    """Class probabilities, the mean over the 8 symmetries."""
    out = []
    with torch.no_grad():
        for s in range(0, len(x), 512):
            xb = torch.from_numpy(x[s : s + 512])
            out.append(np.mean([F.softmax(net(symmetry(xb, k)), 1).numpy() for k in range(8)], 0))
    return np.concatenate(out)


class DensityEnsemble(nn.Module):
    """The mean class probabilities of ``nets`` over the 8 wafer symmetries, written as flips and
    a transpose (the group :func:`symmetry` walks with rotations): one graph for ONNX."""

    def __init__(self, nets: list[DensityNet]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(())
        for view in (x, x.transpose(2, 3)):
            for flipped in (view, view.flip(2), view.flip(3), view.flip((2, 3))):
                for net in self.nets:
                    total = total + F.softmax(net(flipped), 1)
        return total / (8 * len(self.nets))


def fit_density_ensemble(x: np.ndarray, y: np.ndarray, cfg) -> DensityEnsemble:
    """``cfg.seeds`` :class:`DensityNet` s (``patterns.density_cnn``:
    :class:`~waferflow.patterns.config.DensityCnnConfig`), seeds ``cfg.seed`` on, as one model."""
    nets = []
    for k in range(cfg.seeds):
        print(f"density CNN {k + 1}/{cfg.seeds} (seed {cfg.seed + k}, {len(y)} maps)", flush=True)
        nets.append(fit_density_net(x, y, seed=cfg.seed + k, epochs=cfg.epochs, width=cfg.width))
    return DensityEnsemble(nets).eval()


def predict_ensemble(model: DensityEnsemble, x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The ensemble's probabilities of pictures ``x``, ``chunk`` wafers at a time."""
    with torch.no_grad():
        out = [model(torch.from_numpy(x[s : s + chunk])).numpy() for s in range(0, len(x), chunk)]
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def run_density_onnx(session, pictures: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The ONNX ensemble's (:func:`density_to_onnx`) ``(N, classes)`` probabilities of
    ``pictures`` in an ONNX Runtime ``session``, ``chunk`` wafers at a time."""
    out = [
        session.run(["probabilities"], {"pictures": pictures[s : s + chunk]})[0] for s in range(0, len(pictures), chunk)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(CLASSES)), np.float32)


def density_to_onnx(model: DensityEnsemble, channels: int, size: tuple[int, int]) -> bytes:
    """The ensemble as an ONNX graph: ``pictures`` (N, channels, H, W) float32 ->
    ``probabilities`` (N, classes), the batch dynamic."""
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, channels, *size),),
        buffer,
        input_names=["pictures"],
        output_names=["probabilities"],
        opset_version=ONNX_OPSET,
        dynamo=False,
        dynamic_axes={"pictures": {0: "batch"}, "probabilities": {0: "batch"}},
    )
    return buffer.getvalue()
