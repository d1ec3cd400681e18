"""The WGAN-GP's pieces: shapes and conditioning, exact die codes, the gradient penalty, one
manual-optimisation step of each network; the quality gate's outline repair, checks and distances."""

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import disc
from waferflow.gan.quality import (
    OutlineStats,
    distribution_distances,
    frechet_distance,
    nearest_hamming,
    repair_outline,
    ring_profile,
)
from waferflow.gan.wgan import Critic, Generator, WganGp, die_area, one_hot_grids


def test_generator_and_projection_critic_are_class_conditional():
    torch.manual_seed(0)
    g, c = Generator(latent_dim=8, size=16, width=16).eval(), Critic(size=16, width=8)
    z = torch.randn(1, 8).repeat(2, 1)
    area = die_area(torch.from_numpy(disc(16, 16))[None]).repeat(2, 1, 1, 1)
    logits = g(z, torch.tensor([0, 5]), area)
    assert logits.shape == (2, 2, 16, 16) and not torch.allclose(logits[0], logits[1])
    x = one_hot_grids(torch.randint(0, 3, (1, 16, 16))).repeat(2, 1, 1, 1)
    scores = c(x, torch.tensor([0, 5]))
    assert scores.shape == (2,) and scores[0] != scores[1]
    with pytest.raises(ValueError, match="power-of-two"):
        Generator(size=48)


def test_samples_are_exact_one_hot_on_the_given_outline_and_generated_grids_are_die_codes():
    torch.manual_seed(1)
    m = WganGp(size=16, latent_dim=8, gen_width=16, critic_width=8)
    outline = torch.from_numpy(disc(16, 16))
    area = die_area(outline[None]).repeat(3, 1, 1, 1)
    soft = m.sample_soft(torch.tensor([1, 2, 3]), area)
    assert set(soft.unique().tolist()) <= {0.0, 1.0} and torch.all(soft.sum(1) == 1)
    assert torch.equal(soft[:, 0], 1 - area[:, 0])  # "no die" exactly off the given die area
    soft.sum().backward()  # straight-through: gradients reach the generator
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.generator.parameters())
    grids = m.generate(torch.tensor([0, 8]), area[:2], generator=torch.Generator().manual_seed(0))
    assert grids.dtype == torch.uint8 and grids.shape == (2, 16, 16) and set(grids.unique().tolist()) <= {0, 1, 2}
    assert torch.equal(grids[0] != 0, outline != 0) and torch.equal(grids[1] != 0, outline != 0)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic():
    m = WganGp(size=8, latent_dim=4, gen_width=8, critic_width=4)
    with torch.no_grad():  # critic f(x) = sum(x) / sqrt(numel): |grad| = 1 everywhere
        for p in m.critic.parameters():
            p.zero_()
    m.critic.forward = lambda x, y: x.flatten(1).sum(1) / np.sqrt(x[0].numel())
    real, fake = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    assert m.gradient_penalty(real, fake, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(0.0, abs=1e-9)


def test_one_epoch_updates_the_critic_every_batch_and_the_generator_every_n_critic():
    torch.manual_seed(0)
    m = WganGp(size=16, latent_dim=8, gen_width=16, critic_width=8, n_critic=2)
    data = [{"grid": torch.from_numpy(disc(16, 16)), "label": torch.tensor(i % 9)} for i in range(16)]
    before_c = [p.clone() for p in m.critic.parameters()]
    before_g = [p.clone() for p in m.generator.parameters()]
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(m, DataLoader(data, batch_size=4))  # 4 batches: 4 critic steps, 2 generator steps
    assert any(not torch.equal(a, b) for a, b in zip(before_c, m.critic.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_g, m.generator.parameters()))
    assert {"critic_loss", "wasserstein", "gp", "generator_loss"} <= set(trainer.callback_metrics)


def test_outline_repair_keeps_the_wafer_and_fills_holes():
    grid = disc(20, 20)
    grid[10, 10] = 0  # a hole inside the wafer
    grid[0, 0] = 2  # a stray speck outside it
    fixed = repair_outline(grid)
    assert fixed[10, 10] == 1 and fixed[0, 0] == 0
    assert (fixed[grid != 0] != 0).sum() == (grid != 0).sum() - 1  # only the speck went


def test_outline_check_accepts_real_shapes_and_names_what_is_wrong():
    flat = disc(32, 32)
    flat[:3] = 0  # a wafer with a flat
    real = np.stack([disc(32, 32)] * 5 + [flat] * 5)
    stats = OutlineStats.from_real(real)
    bar = np.zeros((32, 32), np.uint8)
    bar[12:20, :] = 1
    reasons = stats.check(np.stack([disc(32, 32), bar, np.ones((32, 32), np.uint8)]))
    assert reasons[0] is None
    assert "area share" in reasons[1] and "eccentricity" in reasons[1]
    assert "area share 1.00 outside real" in reasons[2]


def test_novelty_distances_and_profiles():
    a = disc(16, 16)
    b = a.copy()
    b[8, 2:14] = 2
    assert nearest_hamming(np.stack([a, b]), np.stack([a])).tolist() == [0.0, 12 / 256]
    prof = ring_profile(b, rings=4)
    assert prof.shape == (1, 4) and prof[0].max() > 0
    same = distribution_distances(np.stack([a, b] * 3), np.stack([a, b] * 3))
    assert same["fail_ratio_wasserstein"] == 0 and same["radial_profile_wasserstein"] == 0
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 4))
    assert frechet_distance(emb, emb) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(emb, emb + 3) == pytest.approx(36, rel=0.01)
    assert frechet_distance(emb[:1], emb) is None


def test_run_augment_fills_rare_classes_through_the_gate_and_reports(tiny_project, tmp_path):
    from waferflow.data.records import read_frame
    from waferflow.gan.augment import GanAugmentConfig, run_augment
    from waferflow.data.arrays import WaferArrays

    train = WaferArrays.from_parquet(tiny_project / "data/processed/train.parquet")
    keep = np.ones(len(train), bool)
    keep[np.flatnonzero(train.labels == 1)[3:]] = False  # Donut starved to 3 maps
    grids, labels = train.grids[keep], train.labels[keep]
    cfg = GanAugmentConfig(
        min_count=10,
        target_count=12,
        oversample=2.0,
        gan_steps=2,
        batch_size=8,
        latent_dim=8,
        gen_width=16,
        critic_width=4,
        n_critic=2,
        reference_steps=3,
        min_confidence=0.0,
        min_novelty=0.0,
    )
    report = run_augment(grids, labels, cfg, tmp_path / "aug", progress=False)
    donut = report["classes"]["Donut"]
    assert list(report["classes"]) == ["Donut"] and donut["needed"] == 9 and donut["generated"] == 18
    assert donut["passed"] + sum(donut["dropped"].values()) == 18 and donut["kept"] == min(donut["passed"], 9)
    assert set(donut["dropped"]) == {"outline", "fidelity", "novelty"}
    synth = read_frame(tmp_path / "aug/synthetic.parquet")
    assert len(synth) == donut["kept"] == report["kept_total"]
    if len(synth):
        assert set(synth["source"]) == {"gan"} and set(synth["label"]) == {"Donut"}
        assert synth["defect_mask"].isna().all()
    assert (tmp_path / "aug/generator.pt").is_file() and (tmp_path / "aug/gallery/Donut.png").is_file()
    assert report["generator"]["version"] and "critic_loss" in report["generator"]["train_metrics"]
    none_needed = run_augment(grids, labels, cfg.model_copy(update={"min_count": 2}), tmp_path / "none", progress=False)
    assert none_needed["classes"] == {} and none_needed["generator"] is None
    assert len(read_frame(tmp_path / "none/synthetic.parquet")) == 0
