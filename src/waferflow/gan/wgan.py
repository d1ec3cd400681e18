"""Class-conditional WGAN-GP that generates die grids (not pictures).

* **Output.** Die grids on the model input size, every cell exactly 0 (no die), 1 (pass) or 2
  (fail). The wafer outline is *given*, not drawn: the generator receives the die area of a real
  training map (a product's die layout — what a fab makes — carries no defect class) and gives
  per-die pass/fail logits on it; cells outside the area are "no die". A generated wafer is
  therefore always a real wafer shape (round or not, flats and edge exclusion included), and
  the GAN's capacity goes into the defect pattern. Outlines are drawn from all training maps,
  so a rare class appears on every product layout, not only the few it was seen on.
* **Training** through a straight-through Gumbel-softmax (``hard=True``): the critic always
  sees exact one-hot die grids {no die, pass, fail}, real or generated, so it cannot tell them
  apart by "softness", while gradients flow through the soft sample. Generation draws each die
  from the same softmax.
* **Conditioning.** The generator concatenates a learned class embedding to the noise and the
  die area (pooled to each scale) to every upsampling block; the critic is a projection critic
  (Miyato & Koyama 2018): ``f(x) = w·h(x) + <embed(y), h(x)>``.
* **Objective.** Wasserstein loss with gradient penalty (Gulrajani et al. 2017): λ = 10,
  ``n_critic`` = 5 critic steps per generator step, Adam(β = (0.0, 0.9)) as the paper argues —
  all in ``params.yaml → augment``. The critic has no batch norm (the penalty is per sample);
  the generator does. Lightning's manual optimisation runs the two optimisers and the schedule.

Example:
    >>> import torch
    >>> g = Generator(latent_dim=16, size=32)
    >>> area = torch.ones(2, 1, 32, 32)
    >>> tuple(g(torch.zeros(2, 16), torch.tensor([0, 3]), area).shape)
    (2, 2, 32, 32)
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from waferflow.classes import CLASSES

__all__ = ["Generator", "Critic", "WganGp", "one_hot_grids", "die_area", "compose", "N_CODES"]

N_CODES = 3  # no die, pass, fail


def one_hot_grids(grids: torch.Tensor) -> torch.Tensor:
    """(N, H, W) die codes -> (N, 3, H, W) float one-hot."""
    return F.one_hot(grids.long().clamp(0, N_CODES - 1), N_CODES).permute(0, 3, 1, 2).float()


def die_area(grids: torch.Tensor) -> torch.Tensor:
    """(N, H, W) die codes -> (N, 1, H, W) float: 1 where there is a die."""
    return (grids != 0).float().unsqueeze(1)


def compose(area: torch.Tensor, pass_fail: torch.Tensor) -> torch.Tensor:
    """One-hot grids (N, 3, H, W) from the die area and a (N, 2, H, W) pass/fail one-hot."""
    return torch.cat([1 - area, area * pass_fail], dim=1)


class Generator(nn.Module):
    """Pass/fail logits (N, 2, size, size) for noise, class and a die area (N, 1, size, size)."""

    def __init__(
        self, latent_dim: int = 64, size: int = 64, width: int = 128, n_classes: int = len(CLASSES), embed_dim: int = 16
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"the GAN needs a square power-of-two input size >= 8, got {size}")
        self.latent_dim, self.size, self.width = latent_dim, size, width
        self.embed = nn.Embedding(n_classes, embed_dim)
        self.fc = nn.Sequential(nn.Linear(latent_dim + embed_dim, width * 16), nn.BatchNorm1d(width * 16), nn.ReLU())
        self.blocks, ch = nn.ModuleList(), width
        for _ in range(int(math.log2(size)) - 2):  # 4x4 -> size x size; the die area joins every block
            out = max(ch // 2, 16)
            self.blocks.append(
                nn.Sequential(nn.ConvTranspose2d(ch + 1, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU())
            )
            ch = out
        self.head = nn.Conv2d(ch + 1, 2, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1)).view(len(z), self.width, 4, 4)
        for block in self.blocks:
            h = block(torch.cat([h, F.adaptive_avg_pool2d(area, h.shape[-2:])], dim=1))
        return self.head(torch.cat([h, area], dim=1))


class Critic(nn.Module):
    def __init__(self, size: int = 64, width: int = 32, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        layers, ch = [], N_CODES
        for i in range(int(math.log2(size)) - 2):  # size -> 4x4
            out = width * 2**i
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        feat = ch * 16
        self.linear = nn.Linear(feat, 1)
        self.embed = nn.Embedding(n_classes, feat)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)


class WganGp(L.LightningModule):
    """Trains :class:`Generator` and :class:`Critic` on batches ``{"grid": (N,H,W), "label": (N,)}``."""

    def __init__(
        self,
        size: int = 64,
        latent_dim: int = 64,
        gen_width: int = 128,
        critic_width: int = 32,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        n_critic: int = 5,
        gp_lambda: float = 10.0,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = Generator(latent_dim, size, gen_width)
        self.critic = Critic(size, critic_width)

    def sample_soft(self, y: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
        """Straight-through Gumbel-softmax one-hot grids (N, 3, H, W) for classes ``y`` on die areas ``area``."""
        z = torch.randn(len(y), self.hparams.latent_dim, device=y.device)
        pass_fail = F.gumbel_softmax(self.generator(z, y, area), tau=self.hparams.tau, hard=True, dim=1)
        return compose(area, pass_fail)

    @torch.no_grad()
    def generate(self, y: torch.Tensor, area: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Die grids (N, H, W) uint8 for classes ``y`` on die areas ``area`` (N, 1, H, W).

        Each die is drawn pass or fail from the generator's softmax — the distribution the critic
        was trained against (a hard Gumbel sample is such a draw); taking the argmax instead would
        smooth speckled patterns such as Random into blobs.
        """
        self.generator.eval()
        area = area.float().to(self.device)
        z = torch.randn(len(y), self.hparams.latent_dim, generator=generator).to(self.device)
        p_fail = self.generator(z, y.to(self.device), area).softmax(1)[:, 1].cpu()
        codes = (torch.rand(p_fail.shape, generator=generator) < p_fail).long() + 1
        return (codes * area[:, 0].long().cpu()).to(torch.uint8)

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = torch.rand(len(real), 1, 1, 1, device=real.device)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(mixed, y).sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def training_step(self, batch, batch_idx):
        opt_g, opt_c = self.optimizers()
        real, y = one_hot_grids(batch["grid"]), batch["label"]
        area = die_area(batch["grid"]).roll(1, dims=0)  # fakes on the batch's outlines, paired with other maps
        fake = self.sample_soft(y, area).detach()
        wdist = self.critic(real, y).mean() - self.critic(fake, y).mean()
        gp = self.gradient_penalty(real, fake, y)
        loss_c = -wdist + self.hparams.gp_lambda * gp
        opt_c.zero_grad()
        self.manual_backward(loss_c)
        opt_c.step()
        self.log_dict(
            {"critic_loss": loss_c, "wasserstein": wdist, "gp": gp}, prog_bar=True, on_step=False, on_epoch=True
        )
        if (batch_idx + 1) % self.hparams.n_critic == 0:
            self.generator.train()
            loss_g = -self.critic(self.sample_soft(y, area), y).mean()
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()
            self.log("generator_loss", loss_g, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        kw = {"lr": self.hparams.lr, "betas": tuple(self.hparams.betas)}
        return [torch.optim.Adam(self.generator.parameters(), **kw), torch.optim.Adam(self.critic.parameters(), **kw)]
