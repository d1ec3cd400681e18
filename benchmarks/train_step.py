"""Training-step speed of the configured WaferUNet on this machine, as ratios measured in one run.

Prints ms per optimiser step (forward + backward + AdamW) for a batch of ``train.batch_size``
wafers at ``preprocess.image_size``, with contiguous (NCHW) and channels-last (NHWC) memory,
and the projected epoch time for the default training split.

    .venv/bin/python benchmarks/train_step.py [--params params.yaml] [--steps 6]
"""

from __future__ import annotations

import argparse
import time

import torch

from waferflow.config import load_params
from waferflow.data.arrays import IGNORE_INDEX
from waferflow.training.config import TrainConfig
from waferflow.training.lightning_module import WaferLitModule


def step_ms(params, channels_last: bool, steps: int) -> float:
    train = TrainConfig.model_validate({**params.train.model_dump(), "channels_last": channels_last})
    module = WaferLitModule(params.model, train, class_weights=[1.0] * 9)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    h, w = params.preprocess.image_size
    gen = torch.Generator().manual_seed(0)
    batch = {
        "x": (torch.rand(train.batch_size, 2, h, w, generator=gen) > 0.5).float(),
        "mask": torch.randint(0, 9, (train.batch_size, h, w), generator=gen),
        "label": torch.randint(0, 9, (train.batch_size,), generator=gen),
    }
    batch["mask"][:, :2] = IGNORE_INDEX
    times = []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        loss = module.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    params = load_params(args.params)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {params.model.encoder_name} "
        f"depth {params.model.encoder_depth}, batch {params.train.batch_size}, input {params.preprocess.image_size}"
    )
    base = step_ms(params, False, args.steps)
    nhwc = step_ms(params, True, args.steps)
    n_train = (
        sum(params.synth.labeled_per_class.values())
        if isinstance(params.synth.labeled_per_class, dict)
        else 9 * params.synth.labeled_per_class
    )
    n_train = int(n_train * (1 - params.split.val_fraction))
    print(f"{'memory format':<16}{'ms/step':>10}{'ms/wafer':>10}{'epoch s':>10}{'ratio':>8}")
    for name, ms in (("contiguous", base), ("channels_last", nhwc)):
        print(
            f"{name:<16}{ms:>10.0f}{ms / params.train.batch_size:>10.2f}"
            f"{ms / params.train.batch_size * n_train / 1000:>10.1f}{base / ms:>8.2f}"
        )


if __name__ == "__main__":
    main()
