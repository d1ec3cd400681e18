"""Load on `waferflow serve`: latency and throughput over HTTP, with and without the shadow.

After ``make pipeline`` (the registry holds a champion with its ONNX export). The service runs
in this process under uvicorn on a free loopback port, exactly as ``waferflow serve`` builds it
(:func:`waferflow.serve.app.create_app`; the prediction log on, in a temporary folder); clients are threads with one
``httpx`` connection each. For every cell — 1, 4 and 16 concurrent clients, batches of 1 and 32
wafers (generated test-split maps), the champion alone and with a challenger in the shadow (the
newest other registered version; the row is left out when there is none) — ``--requests`` requests
(a fifth of them for batch 32) or ``--seconds`` per cell, whichever ends first, after a warm-up.
Printed per cell: p50/p95/p99 request latency, wafers/s, error rate (must be 0), and the HTTP
overhead: p50 over the in-process engine's p50 for the same batch, measured in the same run.

    .venv/bin/python benchmarks/serve.py [--requests 200 --seconds 60]

Writes ``benchmarks/results/serve.json`` and ``benchmarks/results/serve.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from mlflow import MlflowClient

from waferflow.config import load_params
from waferflow.data.arrays import WaferArrays
from waferflow.fileio import write_json, write_text
from waferflow.serve.app import create_app, registry_models, running
from waferflow.serve.models import CHALLENGER, CHAMPION

CONCURRENCY = (1, 4, 16)
BATCHES = (1, 32)


def _cell(url: str, bodies: list[dict], clients: int, requests: int, seconds: float) -> dict:
    """``requests`` requests from ``clients`` threads (or until ``seconds``); latencies and errors."""
    latencies, errors, lock = [], [], threading.Lock()
    deadline = time.perf_counter() + seconds
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                start = time.perf_counter()
                try:
                    answer = http.post("/v1/predict?mask=false", json=bodies[i % len(bodies)])
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    (latencies if ok else errors).append(time.perf_counter() - start)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    wall = time.perf_counter() - started
    done = len(latencies)
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "requests": done + len(errors),
        "errors": len(errors),
        "error_rate": len(errors) / max(1, done + len(errors)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "wafers_per_s": done * len(bodies[0]["wafers"]) / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--requests", type=int, default=200, help="requests per cell at batch 1 (a fifth at batch 32)")
    ap.add_argument("--seconds", type=float, default=60, help="time limit per cell")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/serve"))
    args = ap.parse_args()
    p = load_params(args.params)
    test = WaferArrays.from_parquet(Path(args.params).resolve().parent / "data/processed/test.parquet")
    grids = [g.tolist() for g in test.grids[:256]]
    bodies = {
        b: [{"wafers": [{"die_grid": grids[(i * b + j) % len(grids)]} for j in range(b)]} for i in range(16)]
        for b in BATCHES
    }
    log_dir = tempfile.mkdtemp(prefix="waferflow-serve-bench-log-")  # benchmark traffic stays out of the project's log
    p = p.model_copy(update={"drift": p.drift.model_copy(update={"prediction_log": log_dir})})
    base = registry_models(p, Path(args.params).resolve().parent)
    champion = str(MlflowClient().get_registered_model(p.mlflow.registered_model).aliases[CHAMPION])
    others = [
        mv.version
        for mv in MlflowClient().search_model_versions(f"name='{p.mlflow.registered_model}'")
        if str(mv.version) != champion
    ]
    setups = {"champion alone": {CHAMPION: champion}}
    if others:
        setups["with shadow"] = {CHAMPION: champion, CHALLENGER: str(max(others, key=int))}
    engine = base.load_engine(champion, "benchmark")
    engine.prediction_log = None
    reference = {}
    for b in BATCHES:  # the in-process engine, same wafers, same batch
        times = []
        for i in range(max(10, args.requests // (5 if b > 1 else 1))):
            batch = [np.asarray(w["die_grid"], np.uint8) for w in bodies[b][i % 16]["wafers"]]
            start = time.perf_counter()
            engine.predict(batch)
            times.append(time.perf_counter() - start)
        reference[b] = float(np.percentile(np.asarray(times[3:]) * 1000, 50))
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    print("in-process engine p50: " + ", ".join(f"batch {b}: {ms:.2f} ms" for b, ms in reference.items()))
    rows = []
    for setup, aliases in setups.items():
        models = type(base)(
            base.model_name, base.load_engine, lambda aliases=aliases: aliases, p.serve.shadow_max_pending
        )
        app = create_app(args.params, models=models, poll=False)
        with running(app) as url:
            with httpx.Client(base_url=url, timeout=120) as http:  # warm-up
                for _ in range(5):
                    http.post("/v1/predict?mask=false", json=bodies[1][0]).raise_for_status()
            for clients in CONCURRENCY:
                for b in BATCHES:
                    n = max(clients, args.requests // (5 if b > 1 else 1))
                    cell = _cell(url, bodies[b], clients, n, args.seconds)
                    row = {"setup": setup, "clients": clients, "batch": b, **cell}
                    row["http_overhead"] = cell["p50_ms"] / reference[b]
                    rows.append(row)
                    print(
                        f"{setup:15s} clients {clients:2d} batch {b:2d}: p50 {cell['p50_ms']:7.2f} ms, "
                        f"p95 {cell['p95_ms']:7.2f}, p99 {cell['p99_ms']:7.2f}, {cell['wafers_per_s']:7.1f} wafers/s, "
                        f"errors {cell['errors']}, p50 / in-process {row['http_overhead']:.2f}x",
                        flush=True,
                    )
            served = app.state.models.shadow_counts()
        models.stop()
        if setup == "with shadow":
            print(f"shadow: {served}")
    table = [
        "| setup | clients | batch | p50 ms | p95 ms | p99 ms | wafers/s | errors | p50 / in-process |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ] + [
        f"| {r['setup']} | {r['clients']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
        f"{r['wafers_per_s']:.1f} | {r['errors']} | {r['http_overhead']:.2f}x |"
        for r in rows
    ]
    print("\n".join(table))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), {"machine": machine, "in_process_p50_ms": reference, "rows": rows})
    write_text(args.out.with_suffix(".md"), "\n".join(table) + "\n")
    shutil.rmtree(log_dir, ignore_errors=True)
    if any(r["errors"] for r in rows):
        raise SystemExit("errors under load: see the table")


if __name__ == "__main__":
    main()
