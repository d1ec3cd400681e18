import numpy as np
import torch

from waferflow.data.arrays import IGNORE_INDEX
from waferflow.models.config import ModelConfig
from waferflow.training.config import TrainConfig
from waferflow.training.data import class_weights
from waferflow.training.lightning_module import WaferLitModule

TINY = ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8))


def _batch(with_masks: bool):
    torch.manual_seed(0)
    x = (torch.rand(4, 2, 32, 32) > 0.5).float()
    mask = torch.randint(0, 9, (4, 32, 32)) if with_masks else torch.full((4, 32, 32), IGNORE_INDEX)
    return {"x": x, "mask": mask, "label": torch.tensor([0, 3, 8, 8])}


def test_losses_are_finite_and_both_heads_get_gradients():
    module = WaferLitModule(TINY, TrainConfig(), class_weights=[1.0] * 9)
    out = module.losses(_batch(True))
    assert torch.isfinite(out["loss"]) and out["mask_loss"] > 0 and out["class_loss"] > 0
    out["loss"].backward()
    seg_head = module.net.net.segmentation_head[0].weight.grad
    cls_head = module.net.net.classification_head[3].weight.grad
    assert seg_head.abs().sum() > 0 and cls_head.abs().sum() > 0


def test_wafers_without_masks_train_the_class_head_only():
    module = WaferLitModule(TINY, TrainConfig(class_loss="focal"))
    out = module.losses(_batch(False))
    assert out["mask_loss"] == 0 and torch.isfinite(out["loss"]) and out["class_loss"] > 0
    out["loss"].backward()
    assert module.net.net.segmentation_head[0].weight.grad.abs().sum() == 0


def test_class_weights_are_inverse_frequency():
    w = class_weights(np.array([0] * 30 + [1] * 10 + [8] * 20))
    assert w[1] > w[8] > w[0] and abs(np.mean([w[0], w[1], w[8]]) - 1) < 1e-6 and w[2] == 1.0


def test_epoch_log_prints_one_line_per_epoch_for_logs_without_a_terminal(capsys):
    from types import SimpleNamespace

    import torch

    from waferflow.training.trainer import EpochLog

    log = EpochLog()
    log.on_train_start(None, None)
    trainer = SimpleNamespace(
        is_global_zero=True,
        current_epoch=1,
        max_epochs=4,
        callback_metrics={
            "train_loss_epoch": torch.tensor(0.5),
            "val_macro_f1": torch.tensor(0.75),
            "lr-AdamW": torch.tensor(0.001),
        },
    )
    log.on_train_epoch_end(trainer, None)
    line = capsys.readouterr().out.strip()
    assert line.startswith("epoch 2/4: train_loss_epoch 0.5000, val_macro_f1 0.7500 (") and "min left)" in line
    log.on_train_epoch_end(SimpleNamespace(**{**vars(trainer), "is_global_zero": False}), None)
    assert capsys.readouterr().out == ""  # other DDP ranks stay quiet
