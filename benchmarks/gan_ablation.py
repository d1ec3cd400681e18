"""Does GAN augmentation help the rare classes? Starved-training ablation (``waferflow.gan.ablation``).

Writes ``metrics/augment_ablation.json`` and ``reports/figures/augment_ablation/<class>.png``, prints
the table that is in the README. Run after ``dvc repro`` (it needs the split). Same as
``waferflow augment-ablation``:

    .venv/bin/python benchmarks/gan_ablation.py [--keep 30 --epochs 15]
"""

from __future__ import annotations

import sys

from waferflow.cli import app

if __name__ == "__main__":
    sys.exit(app(["augment-ablation", *sys.argv[1:]]))
