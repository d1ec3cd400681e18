import albumentations as A
import numpy as np

from waferflow.data.arrays import IGNORE_INDEX
from waferflow.synth import WaferGenerator
from waferflow.training.augment import DieNoise, build_augmentation
from waferflow.training.config import AugmentConfig


def test_augmented_pairs_stay_valid_wafers_with_masks_on_fail_dies():
    aug = build_augmentation(AugmentConfig(noise_fail_rate=0.2, dropout_rate=0.5, noise_probability=1.0), seed=3)
    gen = WaferGenerator(4)
    for i, cls in enumerate(["Scratch", "Edge-Ring", "Loc", "Donut"]):
        rec = gen.make(cls, i)
        target = np.where(rec.die_grid == 0, IGNORE_INDEX, rec.defect_mask).astype(np.uint8)
        out = aug(image=rec.die_grid, mask=target)
        grid, mask = out["image"], out["mask"]
        assert set(np.unique(grid)) <= {0, 1, 2}
        assert ((grid == 0) == (mask == IGNORE_INDEX)).all()  # outline moved with the mask
        assert not ((mask > 0) & (mask != IGNORE_INDEX) & (grid != 2)).any()  # mask only on fail dies
        assert (grid != 0).sum() == (rec.die_grid != 0).sum()  # no die created or lost


def test_die_noise_changes_fails_only_inside_the_wafer():
    grid = np.ones((20, 20), np.uint8)
    grid[0] = 0
    grid[5, 5] = 2
    mask = np.zeros_like(grid)
    mask[5, 5] = 3
    # Seeded: the rate is drawn from U(0, fail_rate) per call, and a draw under ~1/380 (about 1 in
    # 200 unseeded runs) adds no fail at all.
    noise = A.Compose([DieNoise(fail_rate=0.5, dropout_rate=0.0, p=1.0)], seed=0)
    for _ in range(5):
        out = noise(image=grid, mask=mask)
        assert (out["image"][0] == 0).all() and (out["image"] == 2).sum() > 1
        assert out["mask"][5, 5] == 3 and (out["mask"] > 0).sum() == 1
