"""Open-set triage of the pipeline's model: novelty AUROC, leave-one-class-out on real maps, and
the risk–coverage of PASS against plain max-softmax thresholding.

After ``make pipeline`` (``models/weights.pt``, ``data/novelty``), with ``../shared/data`` present
for the real-map parts. On the fixed lot split of the real maps (``waferflow.evaluation.real_maps``;
nothing here is tuned, and the triage is calibrated on the *generated* validation split only):

* **generated probes** no class covers, against the generated test split: the ``novel_pattern``
  stream (a reticle grid of failing rows/columns) and mixed two-pattern wafers, 600 each, with a
  seed the novelty stage does not use — AUROC of the combined score and of each stage's;
* **real wafers against generated ones**: how much of the real test lots the triage calls novel
  (the sim-to-real gap seen by the novelty score);
* **risk–coverage on the real test lots**: the share of wafers auto-accepted (PASS) and the error
  among them, for the triage at conformal levels ``set_alpha`` 0.01–0.3 (novelty thresholds as
  configured), against max-softmax thresholding in the same run: coverage at <= 2 % error, error at
  90 % coverage, and the area under each curve (AURC). Figure: ``open_set_risk_coverage.png``;
* **leave-one-class-out on real maps**: for each class K, a small model (``quickfit.SMALL_MODEL``,
  ``--loco-steps`` steps) is trained on the generated training split without K, its novelty head
  fitted on the same wafers; AUROC of the real test wafers of K against the real test wafers of the
  other classes. (A small model, not the default one: nine default fits do not fit on 2 cores.)
* latency: batch-1 ONNX Runtime time with and without the novelty head in the graph (2 threads).

    .venv/bin/python benchmarks/open_set.py [--loco-steps 400] [--skip-loco]

Writes ``benchmarks/results/open_set.json``, ``open_set.md`` and ``open_set_risk_coverage.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from waferflow.classes import CLASSES
from waferflow.config import load_params
from waferflow.data.arrays import WaferArrays
from waferflow.data.resize import resize_grid
from waferflow.evaluation.real_maps import real_arrays
from waferflow.fileio import write_json, write_text
from waferflow.monitoring.scenarios import mixed_pattern_wafers, stream
from waferflow.registry.pyfunc import load_weights
from waferflow.triage.decide import calibrate_triage, decide
from waferflow.triage.novelty import NoveltyHead, fit_novelty, novelty_scores

OUT = Path("benchmarks/results")
PROBE_SEED = 7  # not the novelty stage's
ALPHAS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


def _auroc(known: np.ndarray, novel: np.ndarray) -> float:
    return round(float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(novel))], np.r_[known, novel])), 4)


def _labeled(path: Path) -> WaferArrays:
    arrays = WaferArrays.from_parquet(path)
    return arrays.take(np.flatnonzero(arrays.labels >= 0))


def risk_coverage(confidence: np.ndarray, wrong: np.ndarray) -> dict:
    """Accept the most confident first: coverage at <= 2 % error, error at 90 % coverage, AURC."""
    order = np.argsort(-confidence, kind="stable")
    err = np.cumsum(wrong[order]) / np.arange(1, len(order) + 1)
    cov = np.arange(1, len(order) + 1) / len(order)
    ok = np.flatnonzero(err <= 0.02)
    return {
        "coverage_at_2pct_error": round(float(cov[ok.max()]) if len(ok) else 0.0, 4),
        "error_at_90pct_coverage": round(float(err[int(np.ceil(0.9 * len(order))) - 1]), 4),
        "aurc": round(float(err.mean()), 4),
        "curve": (cov, err),
    }


def leave_one_class_out(params, train: WaferArrays, real_test: WaferArrays, steps: int) -> dict:
    from waferflow.quickfit import SMALL_MODEL, fit_quick
    from waferflow.models.predictor import WaferPredictor

    out = {}
    depth = SMALL_MODEL.encoder_depth
    for k, name in enumerate(CLASSES):
        t0 = time.perf_counter()
        keep = np.flatnonzero(train.labels != k)
        known = train.take(keep)
        # labels stay 0..8 (class K simply absent): the head's class count is unchanged
        net = fit_quick(known, steps=steps, seed=0)
        predictor = WaferPredictor(net).eval()
        head = fit_novelty(predictor, known.grids, known.labels, tuple(range(1, depth + 1)))
        s = novelty_scores(predictor, head, real_test.grids)
        pos, neg = s[real_test.labels == k], s[real_test.labels != k]
        out[name] = {"auroc": _auroc(neg, pos), "wafers": int(len(pos)), "seconds": round(time.perf_counter() - t0, 1)}
        print(
            f"  leave out {name}: AUROC {out[name]['auroc']} on {len(pos)} real test wafers ({out[name]['seconds']} s)",
            flush=True,
        )
    return out


def latency(predictor, head: NoveltyHead, size: tuple[int, int], runs: int = 300) -> dict:
    import onnxruntime as ort

    from waferflow.models.encoding import encode_grids
    from waferflow.triage.novelty import TriagedPredictor

    x = encode_grids(np.ones((1, *size), np.uint8)).numpy()
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, module in (("classifier", predictor), ("with_novelty", TriagedPredictor(predictor, head))):
            path = Path(tmp) / f"{label}.onnx"
            torch.onnx.export(
                module.eval(), (torch.from_numpy(x),), str(path), input_names=["input"], opset_version=17, dynamo=False
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for _ in range(20):
                session.run(None, {"input": x})
            t = []
            for _ in range(runs):
                t0 = time.perf_counter()
                session.run(None, {"input": x})
                t.append(1000 * (time.perf_counter() - t0))
            timings[label] = round(float(np.median(t)), 2)
    timings["ratio"] = round(timings["with_novelty"] / timings["classifier"], 3)
    return timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--weights", type=Path, default=Path("models/weights.pt"))
    ap.add_argument("--novelty", type=Path, default=Path("data/novelty"))
    ap.add_argument("--probe-wafers", type=int, default=600)
    ap.add_argument("--loco-steps", type=int, default=400)
    ap.add_argument("--skip-loco", action="store_true")
    args = ap.parse_args()
    params = load_params(args.params)
    size = tuple(params.preprocess.image_size)
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    predictor = load_weights(args.weights).eval()
    head = NoveltyHead.from_state(torch.load(args.novelty / "head.pt", weights_only=True))
    calibration = json.loads((args.novelty / "triage.json").read_text())
    cfg = params.triage
    result: dict = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.processor() or 'cpu'}",
        "model_version": calibration.get("model_version"),
        "stages": list(head.stages),
    }

    print("generated probes ...", flush=True)
    test = _labeled(Path("data/processed/test.parquet"))
    known = novelty_scores(predictor, head, test.grids, per_stage=True)
    probes = {
        "novel_pattern": stream("novel_pattern", args.probe_wafers, PROBE_SEED, params.synth),
        "mixed_pattern": mixed_pattern_wafers(args.probe_wafers, PROBE_SEED, params.synth),
    }
    result["generated_auroc"] = {}
    for name, records in probes.items():
        s = novelty_scores(predictor, head, np.stack([resize_grid(r.die_grid, size) for r in records]), per_stage=True)
        result["generated_auroc"][name] = {
            "combined": _auroc(known.max(1), s.max(1)),
            **{f"stage_{st}": _auroc(known[:, i], s[:, i]) for i, st in enumerate(head.stages)},
        }
        print(f"  {name}: {result['generated_auroc'][name]}", flush=True)

    real, info = real_arrays(Path(params.evaluate.real_data_dir), size)
    if real is None:
        print(f"no real maps ({info}): the real-map parts are skipped")
    else:
        rt = real["test"]
        probs = predictor.predict(rt.grids)[0]
        nov = novelty_scores(predictor, head, rt.grids)
        wrong = probs.argmax(1) != rt.labels
        triage = decide(probs, nov, calibration)
        decisions = np.array([t["decision"] for t in triage])
        result["real_test"] = {
            "wafers": int(len(rt)),
            "accuracy": round(float(1 - wrong.mean()), 4),
            "triage_at_default": {
                "set_alpha": calibration["set_alpha"],
                **{d.lower(): round(float((decisions == d).mean()), 4) for d in ("PASS", "REVIEW", "REJECT")},
                "error_among_pass": round(float(wrong[decisions == "PASS"].mean()), 4),
            },
            "novelty_auroc_real_vs_generated_test": _auroc(known.max(1), nov),
        }
        # The triage's curve: recalibrated on the generated validation split at each level.
        val = _labeled(Path("data/processed/val.parquet"))
        val_probs, val_nov = predictor.predict(val.grids)[0], novelty_scores(predictor, head, val.grids)
        points = []
        for alpha in ALPHAS:
            cal = calibrate_triage(
                val_probs, val.labels, val_nov, list(CLASSES), alpha, cfg.review_novelty, cfg.reject_novelty
            )
            passed = np.array([t["decision"] == "PASS" for t in decide(probs, nov, cal)])
            points.append(
                {
                    "set_alpha": alpha,
                    "coverage": round(float(passed.mean()), 4),
                    "error": round(float(wrong[passed].mean()), 4) if passed.any() else 0.0,
                }
            )
        msp = risk_coverage(probs.max(1), wrong)
        result["real_test"]["triage_curve"] = points
        result["real_test"]["max_softmax"] = {k: v for k, v in msp.items() if k != "curve"}
        ok = [p for p in points if p["error"] <= 0.02]
        result["real_test"]["triage_coverage_at_2pct_error"] = max((p["coverage"] for p in ok), default=0.0)
        _plot(msp["curve"], points, OUT / "open_set_risk_coverage.png")
        print(
            f"  real test: {result['real_test']['triage_at_default']}, max-softmax {result['real_test']['max_softmax']}"
        )

        if not args.skip_loco:
            print(f"leave-one-class-out ({args.loco_steps} steps a class) ...", flush=True)
            train = _labeled(Path("data/processed/train.parquet"))
            loco = leave_one_class_out(params, train, rt, args.loco_steps)
            result["leave_one_class_out"] = {
                "model": "quickfit.SMALL_MODEL",
                "steps": args.loco_steps,
                "per_class": loco,
                "mean_auroc": round(float(np.mean([v["auroc"] for v in loco.values()])), 4),
            }

    result["latency_ms_batch1"] = latency(predictor, head, size)
    write_json(OUT / "open_set.json", result)
    write_text(OUT / "open_set.md", _markdown(result))
    print(_markdown(result))


def _plot(msp_curve, points, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from waferflow.fileio import save_figure

    cov, err = msp_curve
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(cov, err, label="max-softmax threshold")
    ax.plot([p["coverage"] for p in points], [p["error"] for p in points], "o-", label="triage PASS (set_alpha sweep)")
    ax.axhline(0.02, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("coverage (share auto-accepted)")
    ax.set_ylabel("error among accepted")
    ax.set_title("risk-coverage, real WM-811K test lots", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _markdown(r: dict) -> str:
    lines = [f"Machine: {r['machine']}. Model version {r['model_version']}, novelty stages {r['stages']}.", ""]
    lines += ["| probe vs generated test split | AUROC combined | per stage |", "| --- | --- | --- |"]
    for name, a in r["generated_auroc"].items():
        lines.append(
            f"| {name} | {a['combined']} | " + ", ".join(f"{k} {v}" for k, v in a.items() if k != "combined") + " |"
        )
    if "real_test" in r:
        t = r["real_test"]
        d = t["triage_at_default"]
        m = t["max_softmax"]
        lines += [
            "",
            f"Real test lots: {t['wafers']} wafers, accuracy {t['accuracy']}. Triage at set_alpha {d['set_alpha']}: "
            f"PASS {d['pass']:.1%} (error among them {d['error_among_pass']:.1%}), REVIEW {d['review']:.1%}, "
            f"REJECT {d['reject']:.1%}. Novelty AUROC real test vs generated test: "
            f"{t['novelty_auroc_real_vs_generated_test']}.",
            "",
            "| real test lots | coverage at <= 2 % error | error at 90 % coverage | AURC |",
            "| --- | --- | --- | --- |",
            f"| max-softmax | {m['coverage_at_2pct_error']} | {m['error_at_90pct_coverage']} | {m['aurc']} |",
            f"| triage PASS (sweep) | {t['triage_coverage_at_2pct_error']} | - | - |",
            "",
            "| set_alpha | " + " | ".join(str(p["set_alpha"]) for p in t["triage_curve"]) + " |",
            "| --- |" + " --- |" * len(t["triage_curve"]),
            "| coverage | " + " | ".join(str(p["coverage"]) for p in t["triage_curve"]) + " |",
            "| error | " + " | ".join(str(p["error"]) for p in t["triage_curve"]) + " |",
        ]
    if "leave_one_class_out" in r:
        lo = r["leave_one_class_out"]
        lines += [
            "",
            f"Leave-one-class-out on real test lots ({lo['model']}, {lo['steps']} steps): mean AUROC "
            f"**{lo['mean_auroc']}**",
            "",
            "| left out | " + " | ".join(lo["per_class"]) + " |",
            "| --- |" + " --- |" * len(lo["per_class"]),
            "| AUROC | " + " | ".join(str(v["auroc"]) for v in lo["per_class"].values()) + " |",
        ]
    lat = r["latency_ms_batch1"]
    lines += [
        "",
        f"Batch-1 ONNX Runtime p50 (2 threads): classifier {lat['classifier']} ms, with the novelty head "
        f"{lat['with_novelty']} ms ({lat['ratio']}x).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
