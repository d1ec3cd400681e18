"""Torch modules (no training logic): ``wafer_unet.WaferUNet`` (two-headed U-Net),
``encoding`` (die grid -> input channels, mask -> target) and ``config.ModelConfig``."""
