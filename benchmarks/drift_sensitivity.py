"""How small a shift the drift check notices: detection rate against the shift's size.

``drift_detection.py`` measures large, designed shifts. Here two of them are dialled down:

* ``background ×m`` — the generator's background fail-rate range (1–20 % per wafer) times m;
* ``class mix t`` — the pool's class weights blended a share t of the way from the WM-811K-like
  default (74 % none) towards the ``class_mix`` scenario (mostly Edge-Ring, Center, Loc, none 30 %).

Reference: 1 000 unshifted wafers (seed 0); per cell 10 windows of ``--window`` wafers (seeds
1..10), checked with ``params.yaml → drift`` twice: on the wafer features alone, and with the
predictions of the exported model (``--model``, default ``export/model.onnx`` after
``dvc repro``) on both windows — as the monitor does with the champion. Prints the share of
windows that recommend retraining per shift size; writes ``benchmarks/results/drift_sensitivity.json``.

    .venv/bin/python benchmarks/drift_sensitivity.py [--seeds 10 --window 300 --model export/model.onnx]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from waferflow.config import load_params
from waferflow.inference.engine import InferenceEngine
from waferflow.monitoring.drift import check_drift
from waferflow.data.features import feature_frame
from waferflow.monitoring.scenarios import CLASS_MIX_WEIGHTS, stream
from waferflow.synth.dataset import DatasetConfig


def shifted_bases(base: DatasetConfig) -> dict[str, DatasetConfig]:
    """The dialled-down shifts, as generator/pool configurations an unshifted stream is drawn from."""
    lo, hi = base.generator.background_fail_range
    out = {"unshifted (control)": base}  # its rate is the false-alarm rate of each check
    out |= {
        f"background x{m}": base.model_copy(
            update={"generator": base.generator.model_copy(update={"background_fail_range": (lo * m, hi * m)})}
        )
        for m in (1.25, 1.5, 2.0, 3.0)
    }
    default = base.unlabeled_class_weights
    for t in (0.1, 0.25, 0.5):
        total = sum(default.values()), sum(CLASS_MIX_WEIGHTS.values())
        weights = {
            c: (1 - t) * default.get(c, 0) / total[0] + t * CLASS_MIX_WEIGHTS.get(c, 0) / total[1]
            for c in set(default) | set(CLASS_MIX_WEIGHTS)
        }
        out[f"class mix {t:.0%}"] = base.model_copy(update={"unlabeled_class_weights": weights})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--reference", type=int, default=1000)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--model", type=Path, default=Path("export/model.onnx"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/drift_sensitivity.json"))
    args = ap.parse_args()
    cfg = load_params(args.params).drift
    started = time.perf_counter()
    engine = InferenceEngine.from_path(args.model)

    def window(records):
        frame = feature_frame(r.die_grid for r in records)
        results = engine.predict(records)
        return frame.assign(
            predicted_class=[r["class"] for r in results], confidence=[r["confidence"] for r in results]
        )

    reference = window(stream("unshifted", args.reference, seed=0))
    features_only = reference.drop(columns=["predicted_class", "confidence"])
    table = {}
    for name, base in tqdm(shifted_bases(DatasetConfig()).items(), desc="shifts"):
        cells = {"features": [], "with_predictions": []}
        for seed in range(1, args.seeds + 1):
            current = window(stream("unshifted", args.window, seed=seed, base=base))
            cells["features"].append(check_drift(features_only, current, cfg).summary)
            cells["with_predictions"].append(check_drift(reference, current, cfg).summary)
        table[name] = {
            kind: {
                "detection_rate": float(np.mean([s["retrain_recommended"] for s in rows])),
                "mean_drifted_share": round(float(np.mean([s["drifted_share"] for s in rows])), 3),
                "class_mix_drifted": float(
                    np.mean([bool(s["predictions"].get("predicted_class", {}).get("drifted")) for s in rows])
                ),
            }
            for kind, rows in cells.items()
        }
    print("| shift | windows | retrain recommended: features only | with the model's predictions |")
    print("| --- | --- | --- | --- |")
    for name, t in table.items():
        print(
            f"| {name} | {args.seeds} | {t['features']['detection_rate']:.0%} | "
            f"{t['with_predictions']['detection_rate']:.0%} (class mix drifted in "
            f"{t['with_predictions']['class_mix_drifted']:.0%}) |"
        )
    seconds = time.perf_counter() - started
    print(f"windows of {args.window} wafers against {args.reference} reference wafers; {seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "drift": cfg.model_dump(),
                "summary": table,
                "seconds": round(seconds, 1),
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
