"""Ingest speed per format, measured in one run: wafers/s and dies/s for each parser.

Writes the same generated wafers as a CSV die list, an LSWMD-style pickle (read through the
allow-list unpickler), an npz and a canonical Parquet, then times ``parse_file`` on each
(best of ``--repeats``). Run it with another checkout's ``src`` first on ``PYTHONPATH`` to
compare two versions on one machine:

    .venv/bin/python benchmarks/ingest.py [--wafers 400] [--out benchmarks/results/ingest.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import waferflow
from waferflow.classes import CLASSES
from waferflow.data.parsers import parse_file
from waferflow.data.records import write_records
from waferflow.synth import WaferGenerator


def write_inputs(folder: Path, wafers: int) -> tuple[dict[str, Path], int]:
    gen = WaferGenerator(seed=3)
    records = [
        gen.make(CLASSES[i % len(CLASSES)], index=i, lot_id=f"L{i // 25}", wafer_id=str(i % 25 + 1))
        for i in range(wafers)
    ]
    dies = sum(int((r.die_grid > 0).sum()) for r in records)
    lines = ["lot,wafer,x,y,bin"]
    for r in records:
        ys, xs = np.nonzero(r.die_grid)
        lines += [f"{r.lot_id},{r.wafer_id},{x},{y},{1 if r.die_grid[y, x] == 1 else 7}" for y, x in zip(ys, xs)]
    paths = {
        "csv": folder / "dies.csv",
        "lswmd": folder / "LSWMD.pkl",
        "npz": folder / "maps.npz",
        "canonical": folder / "maps.parquet",
    }
    paths["csv"].write_text("\n".join(lines) + "\n")
    pd.DataFrame(
        {
            "waferMap": [r.die_grid for r in records],
            "dieSize": [float(r.die_grid.size)] * wafers,
            "lotName": [r.lot_id for r in records],
            "waferIndex": [float(r.wafer_id) for r in records],
            "failureType": [np.array([[r.label]], dtype=object) for r in records],
        }
    ).to_pickle(paths["lswmd"])
    side = max(max(r.die_grid.shape) for r in records)
    stack = np.zeros((wafers, side, side), np.uint8)
    for i, r in enumerate(records):
        stack[i, : r.die_grid.shape[0], : r.die_grid.shape[1]] = r.die_grid
    np.savez(paths["npz"], arr_0=stack)
    write_records(records, paths["canonical"])
    return paths, dies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wafers", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, dies = write_inputs(Path(tmp), args.wafers)
        figures = {}
        for fmt, path in paths.items():
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = parse_file(path)
                best = min(best, time.perf_counter() - start)
            assert len(result.records) == args.wafers, (fmt, len(result.records), result.rejects[:3])
            figures[fmt] = {
                "seconds": round(best, 4),
                "wafers_per_s": round(args.wafers / best, 1),
                "dies_per_s": round(dies / best),
                "mb": round(path.stat().st_size / 2**20, 2),
            }
            print(
                f"{fmt:10s} {best:7.3f} s  {args.wafers / best:9.1f} wafers/s  {dies / best:11.0f} dies/s  "
                f"({figures[fmt]['mb']} MB)"
            )
    report = {
        "wafers": args.wafers,
        "dies": dies,
        "waferflow": str(Path(waferflow.__file__).parent),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "formats": figures,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
