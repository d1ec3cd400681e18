"""What running a challenger in the shadow costs the champion's answer.

The champion serves the same request stream twice: alone, then through
:class:`waferflow.monitoring.shadow.ShadowEngine` with a challenger (the same exported model, as a
retrained challenger usually has the champion's architecture) on the background worker. Requests
arrive back to back (a saturated server: the worst case for the shadow, which competes for the
same cores), and at a given load (``--load 0.5``: the champion busy half of the time, idle
gaps between requests). Prints the champion's per-request latency (p50 / p95, ms) both ways, their ratios,
and how many shadow copies were run or dropped (``max_pending``); writes
``benchmarks/results/shadow_overhead.json``. The challenger runs on one ONNX Runtime thread, with the
shadow worker at normal priority and at ``nice`` 19 (the default). Both engines log to a throw-away prediction log, as
in production.

    .venv/bin/python benchmarks/shadow_overhead.py [--model export/model.onnx --requests 300 --batch 1,16]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from waferflow.inference.engine import InferenceEngine
from waferflow.inference.prediction_log import PredictionLog
from waferflow.monitoring.scenarios import stream
from waferflow.monitoring.shadow import ShadowEngine


def timed(engine, batches, gap_s: float = 0.0) -> list[float]:
    """Per-request latency (ms); ``gap_s`` idle between requests (the server's spare time)."""
    out = []
    for batch in batches:
        start = time.perf_counter()
        engine.predict(batch)
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(gap_s)
    return out


def summary(times: list[float]) -> dict:
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
        "mean_ms": round(float(np.mean(times)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("export/model.onnx"))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--batch", default="1,16", help="Wafers per request, comma-separated.")
    ap.add_argument("--load", default="1.0,0.5", help="Champion busy share(s): 1.0 = back to back.")
    ap.add_argument("--max-pending", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/shadow_overhead.json"))
    args = ap.parse_args()
    records = stream("unshifted", 400, seed=3)
    result = {"cpu_count": os.cpu_count(), "requests": args.requests, "max_pending": args.max_pending, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        plog = PredictionLog(Path(tmp) / "log")
        champion = InferenceEngine.from_path(args.model, prediction_log=plog, alias="champion")
        challenger = InferenceEngine.from_path(args.model, threads=1, prediction_log=plog, alias="challenger")
        for size in (int(b) for b in args.batch.split(",")):
            batches = [records[(i * size) % len(records) :][:size] for i in range(args.requests)]
            service_s = float(np.median(timed(champion, batches[:30]))) / 1000  # warm-up, and the service time
            for load in (float(x) for x in args.load.split(",")):
                gap = service_s * (1 / load - 1)
                alone = timed(champion, batches, gap)
                for nice in (None, 19):
                    with ShadowEngine(champion, challenger, max_pending=args.max_pending, nice=nice) as shadow:
                        beside = timed(shadow, batches, gap)
                    row = {
                        "batch": size,
                        "load": load,
                        "shadow_nice": nice,
                        "alone": summary(alone),
                        "with_shadow": summary(beside),
                        "p50_ratio": round(float(np.percentile(beside, 50) / np.percentile(alone, 50)), 2),
                        "p95_ratio": round(float(np.percentile(beside, 95) / np.percentile(alone, 95)), 2),
                        "shadowed": shadow.shadowed,
                        "dropped": shadow.dropped,
                        "failed": shadow.failed,
                    }
                    result["rows"].append(row)
                    print(
                        f"batch {size:>2}, load {load:.0%}, shadow nice {str(nice):>4}: champion p50 "
                        f"{row['alone']['p50_ms']} -> {row['with_shadow']['p50_ms']} ms ({row['p50_ratio']}x), p95 "
                        f"{row['alone']['p95_ms']} -> {row['with_shadow']['p95_ms']} ms ({row['p95_ratio']}x); "
                        f"shadow ran {row['shadowed']}, dropped {row['dropped']} of {args.requests}"
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{os.cpu_count()} CPU cores; written {args.out}")


if __name__ == "__main__":
    main()
