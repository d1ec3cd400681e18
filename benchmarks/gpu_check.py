"""GPU check: the project's CUDA, bf16 and DDP training paths, run for real on one GPU, and measured.

On a CUDA machine, in one process:

1. generates the default data set into a temporary folder with the pipeline's own stages
   (``generate`` -> ``ingest`` -> ``validate`` -> ``split``, ``params.yaml`` as it is; ``validate``
   is replaced by a plain copy only when great-expectations is not installed, which on the
   default generated maps keeps every wafer anyway);
2. runs the train stage's ``waferflow.training.trainer.fit()`` (MLflow into a SQLite store in the
   temporary folder) with the default model and ``train`` overridden to ``accelerator: gpu``,
   ``devices: 1`` and (a) ``precision: 32-true``, (b) ``bf16-mixed``, (c) ``bf16-mixed`` with
   ``strategy: ddp`` (one process: it still goes through the DDP wrapper and NCCL init);
   s/epoch, best val macro-F1, peak GPU memory, epochs;
3. exports the fp32- and bf16-trained checkpoints with ``waferflow.inference.export.export_onnx``
   (parity: ONNX Runtime CPU vs PyTorch fp32 on the val split, ``export.tolerance``);
4. times one optimiser step (forward + backward + AdamW) at ``train.batch_size``: fp32 vs bf16
   autocast, NCHW vs channels_last, as ratios from the same run;
5. when ``--real`` holds labeled real maps: scores the 7-epoch models on the real test and dev
   lots (``waferflow.evaluation.real_maps``) and, when the time budget allows, a longer bf16 fit
   (``--long-epochs``, early stopping as configured) too.

A failing configuration is recorded with its error (and, for a deterministic-algorithms error,
retried with ``deterministic: false``); the JSON is rewritten after every step.

    PYTHONPATH=src python3 benchmarks/gpu_check.py [--params params.yaml] [--epochs 7] \\
        [--real .gpu] [--long-epochs 40] [--budget-s 540] [--out benchmarks/results/gpu_check.json]
    # the long fit alone, added to an earlier output (a second call when the first ran out of time):
    PYTHONPATH=src python3 benchmarks/gpu_check.py --only-long --real .gpu --long-epochs 40 \\
        --epoch-s-estimate S --merge earlier.json --out benchmarks/results/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from waferflow.classes import CLASSES
from waferflow.config import load_params
from waferflow.data.arrays import IGNORE_INDEX, WaferArrays
from waferflow.layout import Layout
from waferflow.registry.tracking import MlflowConfig
from waferflow.stages import stage
from waferflow.training import trainer as trainer_mod
from waferflow.training.config import TrainConfig
from waferflow.training.lightning_module import WaferLitModule

CONFIGS = {
    "fp32": {"precision": "32-true", "strategy": "auto"},
    "bf16": {"precision": "bf16-mixed", "strategy": "auto"},
    "bf16_ddp": {"precision": "bf16-mixed", "strategy": "ddp"},
}


class TimedEpochLog(trainer_mod.EpochLog):
    """fit()'s own per-epoch log line, plus the wall time and val macro-F1 of every epoch."""

    records: list[dict] = []

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        TimedEpochLog.records = []
        self.last = self.started

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        now = time.perf_counter()
        f1 = trainer.callback_metrics.get("val_macro_f1")
        TimedEpochLog.records.append(
            {"seconds": round(now - self.last, 2), "val_macro_f1": None if f1 is None else round(float(f1), 4)}
        )
        self.last = now


def _error(exc: BaseException) -> dict:
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "traceback_tail": "".join(traceback.format_exception(exc)).splitlines()[-25:],
    }


def make_data(params, root: Path) -> dict:
    """The default data set through the pipeline's stages into ``root`` (a Layout)."""
    layout = Layout(root)
    (root / "data/raw").mkdir(parents=True, exist_ok=True)  # ingest.sources names it; empty as in a fresh checkout
    started, out = time.perf_counter(), {}
    for name in ("generate", "ingest", "validate", "split"):
        t = time.perf_counter()
        try:
            result = stage(name).run(params, layout)
            out[name] = {"summary": result.summary}
        except ModuleNotFoundError as exc:
            if name != "validate":
                raise
            layout.validated.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(layout.ingested, layout.validated)
            out[name] = {"skipped": f"{exc}; ingested table used as validated (0 rejects on the default maps locally)"}
        out[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(f"data: {name}: {out[name]}", flush=True)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def run_fit(params, root: Path, name: str, overrides: dict, max_epochs: int) -> dict:
    """fit() with ``train`` overridden; timing, memory, result. Deterministic-mode errors retried once."""
    tries, deterministic = [], params.train.deterministic
    while True:
        train = TrainConfig.model_validate(
            {
                **params.train.model_dump(),
                "accelerator": "gpu",
                "devices": 1,
                "max_epochs": max_epochs,
                "deterministic": deterministic,
                **overrides,
            }
        )
        env = dict(os.environ)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            summary = trainer_mod.fit(
                params.model,
                train,
                root / "data/processed",
                root / "models" / name,
                MlflowConfig(tracking_uri="sqlite:///mlflow.db", artifact_root="mlruns", experiment="gpu_check"),
                root,
                run_tags={"gpu_check": name},
            )
        except Exception as exc:  # noqa: BLE001 - recorded, the next configuration still runs
            tries.append({"deterministic": deterministic, "error": _error(exc)})
            print(f"fit {name} FAILED (deterministic={deterministic}): {type(exc).__name__}: {exc}", flush=True)
            retry = deterministic and "determinis" in str(exc).lower()
            _reset_distributed(env)
            if retry:
                deterministic = False
                continue
            return {"config": overrides, "max_epochs": max_epochs, "failed": True, "tries": tries}
        wall = time.perf_counter() - started
        _reset_distributed(env)
        epochs = TimedEpochLog.records
        secs = [e["seconds"] for e in epochs]
        result = {
            "config": {**overrides, "deterministic": deterministic},
            "max_epochs": max_epochs,
            "failed": False,
            "earlier_tries": tries,
            "best_val_macro_f1": round(summary["best_val_macro_f1"], 4),
            "epochs_trained": len(epochs),
            "fit_epochs_trained": summary["epochs_trained"],
            "s_per_epoch_mean": round(float(np.mean(secs)), 2) if secs else None,
            "s_per_epoch_median_after_first": round(float(np.median(secs[1:])), 2) if len(secs) > 1 else None,
            "first_epoch_s": secs[0] if secs else None,
            "fit_wall_s": round(wall, 1),
            "train_seconds": summary["train_seconds"],
            "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
            "peak_rss_mb": summary["peak_rss_mb"],
            "world_size": summary["world_size"],
            "mlflow_run_id": summary["run_id"],
            "checkpoint": summary["checkpoint"],
            "epochs": epochs,
        }
        shown = {k: v for k, v in result.items() if k != "epochs"}
        print(f"fit {name}: {shown}", flush=True)
        return result


def _reset_distributed(env: dict) -> None:
    """After a DDP fit: no process group, no launcher variables left for the next Trainer."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)


def load_net(checkpoint: str):
    return WaferLitModule.load_from_checkpoint(checkpoint, map_location="cpu").net.eval()


def onnx_parity(params, root: Path, name: str, checkpoint: str) -> dict:
    """The export stage's export_onnx on the checkpoint, parity on the val split; plus the GPU
    bf16-autocast logits against fp32, for the record."""
    from waferflow.inference.export import ParityError, export_onnx
    from waferflow.models.predictor import WaferPredictor

    val = WaferArrays.from_parquet(root / "data/processed/val.parquet")
    net = load_net(checkpoint)
    dtypes = sorted({str(p.dtype) for p in net.parameters()})
    predictor = WaferPredictor(net)
    temperature = predictor.calibrate(val.grids, val.labels)  # as the train stage does before export
    out_dir = root / "export" / name
    started = time.perf_counter()
    try:
        report = export_onnx(
            predictor,
            out_dir,
            val.grids,
            val.grids,
            val.labels,
            params.export.tolerance,
            params.export.max_int8_f1_drop,
            params.export.calibration_size,
        )
        failure = None
    except ParityError as exc:
        report, failure = json.loads((out_dir / "export.json").read_text()), str(exc)
    out = {
        "checkpoint_param_dtypes": dtypes,
        "temperature": round(temperature, 6),
        "parity": report["parity"],
        "int8": report["int8"],
        "parity_error": failure,
        "seconds": round(time.perf_counter() - started, 1),
    }
    # GPU inference with bf16 autocast vs the fp32 reference (not part of the export stage)
    from waferflow.models.encoding import encode_grids

    gpu = WaferPredictor(load_net(checkpoint)).cuda().eval()
    with torch.no_grad():
        x = encode_grids(val.grids).cuda()
        ref = gpu.net(x)[1].float()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = gpu.net(x)[1].float()
    out["gpu_bf16_autocast_vs_fp32"] = {
        "max_abs_diff_class_logits": round(float((ref - low).abs().max()), 6),
        "argmax_mismatches": int((ref.argmax(1) != low.argmax(1)).sum()),
        "wafers": int(len(val.grids)),
    }
    print(f"onnx {name}: {out}", flush=True)
    return out


def step_times(params, steps: int, deterministic: bool) -> dict:
    """ms per optimiser step on the GPU (median), fp32 vs bf16 autocast, NCHW vs channels_last."""
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, False  # as fit() sets them
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    h, w = params.preprocess.image_size
    bs = params.train.batch_size
    gen = torch.Generator().manual_seed(0)
    batch = {
        "x": (torch.rand(bs, 2, h, w, generator=gen) > 0.5).float(),
        "mask": torch.randint(0, 9, (bs, h, w), generator=gen),
        "label": torch.randint(0, 9, (bs,), generator=gen),
    }
    batch["mask"][:, :2] = IGNORE_INDEX
    batch = {k: v.cuda() for k, v in batch.items()}
    out = {}
    for cl in (False, True):
        for prec in ("fp32", "bf16"):
            train = TrainConfig.model_validate({**params.train.model_dump(), "channels_last": cl})
            torch.manual_seed(0)
            module = WaferLitModule(params.model, train, class_weights=[1.0] * 9).cuda()
            opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
            times = []
            for i in range(steps + 10):  # ten warm-up steps
                torch.cuda.synchronize()
                t = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    loss = module.losses(batch)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                torch.cuda.synchronize()
                if i >= 10:
                    times.append(time.perf_counter() - t)
            out[f"{prec}_{'channels_last' if cl else 'nchw'}"] = round(1000 * float(np.median(times)), 2)
            del module, opt
    base = out["fp32_nchw"]
    return {
        "ms_per_step": out,
        "ratio_vs_fp32_nchw": {k: round(base / v, 3) for k, v in out.items()},
        "bf16_speedup_channels_last": round(out["fp32_channels_last"] / out["bf16_channels_last"], 3),
        "channels_last_speedup_bf16": round(out["bf16_nchw"] / out["bf16_channels_last"], 3),
        "batch_size": bs,
        "steps_timed": steps,
        "deterministic": deterministic,
        "cudnn_benchmark": False,
    }


def real_scores(net, real: dict) -> dict:
    from waferflow.evaluation.evaluate import evaluate_arrays
    from waferflow.models.predictor import WaferPredictor

    predictor = WaferPredictor(net).cuda().eval()
    out = {}
    for part in ("test", "dev"):
        cls = evaluate_arrays(predictor, real[part])["classification"]
        out[part] = {
            "wafers": cls["n_wafers"],
            "macro_f1": cls["macro_f1"],
            "accuracy": cls["accuracy"],
            "recall": {c: round(cls["per_class"][c]["recall"], 4) for c in CLASSES},
            "support": {c: cls["per_class"][c]["support"] for c in CLASSES},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--epochs", type=int, default=None, help="max_epochs of the three fits (default: params)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=50, help="timed optimiser steps per step-time variant")
    parser.add_argument("--real", type=Path, default=None, help="folder with labeled real maps (LSWMD_subset.pkl)")
    parser.add_argument("--long-epochs", type=int, default=0, help="max_epochs of the long bf16 fit (0: none)")
    parser.add_argument(
        "--budget-s", type=float, default=540.0, help="wall-time budget: fewer epochs or no long fit past it"
    )
    parser.add_argument("--only-long", action="store_true", help="data, then only the long fit (and its real scores)")
    parser.add_argument(
        "--epoch-s-estimate", type=float, default=None, help="bf16 s/epoch for planning the long fit (--only-long)"
    )
    parser.add_argument("--merge", type=Path, default=None, help="an earlier output of this script to add to")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    trainer_mod.EpochLog = TimedEpochLog  # fit() builds its EpochLog by this name (stdout not a terminal)
    params = load_params(args.params)
    epochs = args.epochs or params.train.max_epochs
    root = args.workdir or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    root.mkdir(parents=True, exist_ok=True)
    props = torch.cuda.get_device_properties(0)
    import lightning
    import mlflow
    import segmentation_models_pytorch as smp

    machine = {
        "gpu": props.name,
        "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "lightning": lightning.__version__,
        "smp": smp.__version__,
        "mlflow": mlflow.__version__,
    }
    results: dict = json.loads(args.merge.read_text()) if args.merge else {}
    if results:
        results.setdefault("runs", []).append({"machine": machine, "only_long": args.only_long})
    else:
        results["machine"] = machine
    results.setdefault(
        "params",
        {
            "max_epochs": epochs,
            "batch_size": params.train.batch_size,
            "image_size": list(params.preprocess.image_size),
            "model": params.model.model_dump(mode="json"),
            "num_workers": params.train.num_workers,
            "deterministic": params.train.deterministic,
            "channels_last": params.train.channels_last,
            "early_stopping_patience": params.train.early_stopping_patience,
            "export_tolerance": params.export.tolerance,
        },
    )

    def save() -> None:
        results["elapsed_s"] = round(time.perf_counter() - t0, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    def left() -> float:
        return args.budget_s - (time.perf_counter() - t0)

    print(json.dumps(machine), flush=True)
    data = make_data(params, root)
    data["train_wafers"] = len(WaferArrays.from_parquet(root / "data/processed/train.parquet").labels)
    data["val_wafers"] = len(WaferArrays.from_parquet(root / "data/processed/val.parquet").labels)
    results["data" if "data" not in results else "data_long_fit_run"] = data
    save()

    real = None
    if args.real is not None:
        from waferflow.evaluation.real_maps import real_arrays

        real, results["real"] = real_arrays(args.real, tuple(params.preprocess.image_size))
        save()

    fits, scores = results.setdefault("fits", {}), results.setdefault("real_scores", {})
    if not args.only_long:
        try:
            results["step_time"] = step_times(params, args.steps, params.train.deterministic)
        except Exception as exc:  # noqa: BLE001
            print(f"step timing (deterministic) FAILED: {exc}", flush=True)
            results["step_time"] = {"deterministic_error": _error(exc), **step_times(params, args.steps, False)}
        steps_per_epoch = -(-data["train_wafers"] // params.train.batch_size)
        layout_name = "channels_last" if params.train.channels_last else "nchw"
        results["step_time"]["steps_per_epoch"] = steps_per_epoch
        print(f"step time: {results['step_time']}", flush=True)
        save()
        per_epoch = None  # wall s per epoch of the last fit, set-up included: plans the next
        for k, name in enumerate(args.configs):
            n = epochs
            if per_epoch is not None:  # keep ~100 s for the ONNX exports and scoring
                fitting = int((left() - 100) / (per_epoch * 1.15) / (len(args.configs) - k))
                n = max(2, min(epochs, fitting))
            fits[name] = run_fit(params, root, name, CONFIGS[name], n)
            if n < epochs:
                fits[name]["epochs_reduced_for_time"] = f"{n} of {epochs}"
            if not fits[name]["failed"]:
                per_epoch = fits[name]["fit_wall_s"] / max(1, fits[name]["epochs_trained"])
                if fits[name]["s_per_epoch_median_after_first"]:
                    variant = f"{'bf16' if 'bf16' in name else 'fp32'}_{layout_name}"
                    compute = steps_per_epoch * results["step_time"]["ms_per_step"][variant] / 1000
                    fits[name]["optimiser_compute_share_of_epoch"] = round(
                        compute / fits[name]["s_per_epoch_median_after_first"], 3
                    )
            save()
        onnx = results.setdefault("onnx", {})
        for name in ("fp32", "bf16"):
            if name in fits and not fits[name]["failed"]:
                try:
                    onnx[name] = onnx_parity(params, root, name, fits[name]["checkpoint"])
                except Exception as exc:  # noqa: BLE001
                    onnx[name] = {"error": _error(exc)}
                    print(f"onnx {name} FAILED: {exc}", flush=True)
                save()
        if real is not None:
            for name, fit in list(fits.items()):
                if not fit["failed"]:
                    key = f"{name}_{fit['max_epochs']}ep"
                    scores[key] = real_scores(load_net(fit["checkpoint"]), real)
                    print(f"real {key}: " + ", ".join(f"{p} {scores[key][p]['macro_f1']}" for p in ("test", "dev")))
            save()

    if args.long_epochs and real is not None:
        per_epoch = args.epoch_s_estimate or (fits.get("bf16") or {}).get("fit_wall_s", 0) / max(
            1, (fits.get("bf16") or {}).get("epochs_trained", 1)
        )
        fitting = int((left() - 40) / (per_epoch * 1.1)) if per_epoch else 0
        # A shorter one-cycle schedule is another experiment: in a full run only the asked length
        # runs; with --only-long (the whole budget is the long fit's) a shorter one is allowed.
        n = args.long_epochs if fitting >= args.long_epochs else (fitting if args.only_long else 0)
        plan = {"asked_epochs": args.long_epochs, "s_per_epoch_estimate": round(per_epoch, 2), "max_epochs": n}
        results["long_fit_plan"] = plan
        if n >= epochs + 3:
            name = f"bf16_long{n}"
            fits[name] = run_fit(params, root, name, CONFIGS["bf16"], n)
            if not fits[name]["failed"]:
                key = f"bf16_{n}ep_max"
                scores[key] = real_scores(load_net(fits[name]["checkpoint"]), real)
                print(f"real {key}: " + ", ".join(f"{p} {scores[key][p]['macro_f1']}" for p in ("test", "dev")))
        else:
            plan["skipped"] = f"too little of --budget-s left ({left():.0f} s) for {args.long_epochs} epochs"
        save()
    save()
    print(f"written {args.out} ({results['elapsed_s']} s)", flush=True)


if __name__ == "__main__":
    main()
