"""Procedural wafer-map generator: the embedded default data set of waferflow.

Example:
    >>> from waferflow.synth import WaferGenerator
    >>> gen = WaferGenerator(seed=7)
    >>> rec = gen.make("Scratch")
    >>> int(((rec.defect_mask > 0) & (rec.die_grid != 2)).sum())   # mask only on fail dies
    0
"""

from waferflow.synth.generator import GeneratorConfig, WaferGenerator, WaferLayout
from waferflow.synth.dataset import DatasetConfig, generate_dataset

__all__ = ["GeneratorConfig", "WaferGenerator", "WaferLayout", "DatasetConfig", "generate_dataset"]
