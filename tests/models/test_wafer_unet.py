import numpy as np
import pytest
import torch

from waferflow.data.arrays import IGNORE_INDEX, mask_target
from waferflow.models.config import ModelConfig
from waferflow.models.encoding import encode_grids
from waferflow.models.wafer_unet import WaferUNet

TINY = ModelConfig(encoder_depth=3, decoder_channels=(32, 16, 8))


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (32, 64)])
def test_two_heads_have_the_documented_shapes(size):
    mask_logits, class_logits = WaferUNet(TINY)(torch.zeros(3, 2, *size))
    assert mask_logits.shape == (3, 9, *size) and class_logits.shape == (3, 9)


def test_decoder_channels_must_match_depth():
    with pytest.raises(ValueError, match="one per encoder stage"):
        WaferUNet(ModelConfig(encoder_depth=4, decoder_channels=(32, 16)))


def test_encoding_channels_and_mask_target():
    grids = np.array([[[0, 1, 2], [2, 1, 0]]], np.uint8)
    x = encode_grids(grids)
    assert x.shape == (1, 2, 2, 3) and x.dtype == torch.float32
    assert x[0, 0].tolist() == [[0, 1, 1], [1, 1, 0]] and x[0, 1].tolist() == [[0, 0, 1], [1, 0, 0]]
    mask = np.array([[[0, 0, 4], [4, 0, 0]]], np.uint8)
    assert mask_target(grids, mask).tolist() == [[[IGNORE_INDEX, 0, 4], [4, 0, IGNORE_INDEX]]]
    assert (mask_target(grids, None) == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="N, H, W"):
        encode_grids(np.zeros((4, 4), np.uint8))
