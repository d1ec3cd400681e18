"""Torch modules (no training logic): ``wafer_unet.WaferUNet`` (two-headed U-Net),
``predictor.WaferPredictor`` (the served model: net, calibration temperature, post-processing),
``encoding`` (die grid -> input channels, mask -> target) and ``config.ModelConfig``."""
