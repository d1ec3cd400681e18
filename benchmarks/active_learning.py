"""Label efficiency of the active-learning strategies, simulated with the generator as the oracle.

A fab-like setting: a WM-811K-like unlabeled pool (74 % ``none``, rare classes well under 1 %),
a small balanced seed set (``--seed-per-class`` per class, with masks), and a fixed balanced
test set on die layouts the pool never uses. Each round a strategy picks ``--budget`` pool
wafers; the generator's true class is revealed for them (class label only — annotators draw no
masks, so their mask loss is ignored); the model is retrained from scratch for a fixed number of
steps; macro-F1 on the test set is recorded. Every strategy starts from the same seed set and
seed, over ``--seeds`` repetitions.

Outputs (``--out``, default ``benchmarks/results/active_learning``): ``curve.png`` (test
macro-F1 vs labels used, mean and min–max band per strategy), ``results.json`` (every run), and
``table.md``: labels each strategy needs to reach random sampling's final mean macro-F1, and the
ratio to random's labels.

    .venv/bin/python benchmarks/active_learning.py [--seeds 3 --rounds 6 --budget 40 --steps 250]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from waferflow.models.scoring import score_pool  # noqa: E402
from waferflow.active.strategies import STRATEGIES, select  # noqa: E402
from waferflow.classes import CLASSES  # noqa: E402
from waferflow.data.arrays import IGNORE_INDEX, WaferArrays  # noqa: E402
from waferflow.data.records import read_frame, write_records  # noqa: E402
from waferflow.data.split import resize_frame  # noqa: E402
from waferflow.quickfit import fit_quick  # noqa: E402
from waferflow.synth.dataset import DatasetConfig, generate_dataset  # noqa: E402


def load_data(args) -> dict[str, WaferArrays]:
    cfg = DatasetConfig(
        seed=args.data_seed,
        labeled_per_class=args.seed_per_class * 3,
        unlabeled_count=args.pool,
        test_per_class=args.test_per_class,
        n_products=300,
    )
    sets = generate_dataset(cfg, progress=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, records in sets.items():
            path = write_records(records, Path(tmp) / f"{name}.parquet")
            out[name] = WaferArrays.from_frame(resize_frame(read_frame(path), (args.size, args.size)))
    truth = [json.loads(a)["true_label"] for a in out["unlabeled"].frame["attrs"]]
    out["unlabeled"].labels = np.array([CLASSES.index(t) for t in truth], np.int64)  # the oracle
    out["unlabeled"].targets[:] = IGNORE_INDEX  # an annotator gives a class, not a mask
    return out


def run(strategy: str, seed: int, data: dict[str, WaferArrays], args) -> list[dict]:
    rng = np.random.default_rng(seed)
    lab = data["labeled"]
    seed_idx = np.concatenate(
        [rng.choice(np.flatnonzero(lab.labels == c), args.seed_per_class, replace=False) for c in range(len(CLASSES))]
    )
    pool = data["unlabeled"]
    taken = np.zeros(len(pool), bool)
    curve = []
    for rnd in range(args.rounds + 1):
        picked = np.flatnonzero(taken)
        train = WaferArrays(
            np.concatenate([lab.grids[seed_idx], pool.grids[picked]]),
            np.concatenate([lab.targets[seed_idx], pool.targets[picked]]),
            np.concatenate([lab.labels[seed_idx], pool.labels[picked]]),
        )
        net = fit_quick(train, steps=args.steps, seed=seed, lr=args.lr, batch_size=args.batch_size)
        test = score_pool(net, data["test"].grids, batch_size=512)
        f1 = f1_score(
            data["test"].labels, test.probs.argmax(1), average="macro", labels=range(len(CLASSES)), zero_division=0
        )
        curve.append(
            {
                "strategy": strategy,
                "seed": seed,
                "round": rnd,
                "labels": int(len(train)),
                "macro_f1": float(f1),
                "rare_in_queries": int(
                    np.isin(
                        pool.labels[picked], [CLASSES.index(c) for c in ("Near-full", "Donut", "Random", "Scratch")]
                    ).sum()
                ),
            }
        )
        if rnd == args.rounds:
            break
        free = np.flatnonzero(~taken)
        s = score_pool(
            net, pool.grids[free], mc_samples=args.mc_samples if strategy == "bald" else 0, batch_size=512, seed=seed
        )
        labeled_emb = score_pool(net, train.grids, batch_size=512).emb if strategy in ("coreset", "hybrid") else None
        chosen, _ = select(
            strategy,
            args.budget,
            probs=s.probs,
            mc_probs=s.mc_probs,
            pool_emb=s.emb,
            labeled_emb=labeled_emb,
            rng=rng,
            prefilter=args.prefilter,
        )
        taken[free[chosen]] = True
    return curve


def labels_to_reach(xs: np.ndarray, ys: np.ndarray, target: float) -> float | None:
    """Labels at which a mean curve first reaches ``target`` (linear between rounds), or None."""
    for i, y in enumerate(ys):
        if y >= target:
            if i == 0:
                return float(xs[0])
            x0, x1, y0 = xs[i - 1], xs[i], ys[i - 1]
            return float(x0 + (x1 - x0) * (target - y0) / (y - y0))
    return None


def summarise(rows: list[dict], out: Path) -> str:
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    curves = {}
    for s in strategies:
        mine = [r for r in rows if r["strategy"] == s]
        rounds = sorted({r["round"] for r in mine})
        xs = np.array([np.mean([r["labels"] for r in mine if r["round"] == k]) for k in rounds])
        ys = np.array([[r["macro_f1"] for r in mine if r["round"] == k] for k in rounds])
        rare = np.mean([r["rare_in_queries"] for r in mine if r["round"] == rounds[-1]])
        curves[s] = (xs, ys.mean(1), ys.min(1), ys.max(1), rare)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, (xs, mean, lo, hi, _) in curves.items():
        ax.plot(
            xs,
            mean,
            marker="o",
            ms=3,
            label=s,
            lw=2.2 if s == "random" else 1.4,
            color="black" if s == "random" else None,
        )
        ax.fill_between(xs, lo, hi, alpha=0.12, color="black" if s == "random" else None)
    target = curves["random"][1][-1]
    ax.axhline(target, ls=":", color="grey", lw=1)
    ax.set_xlabel("labeled wafers used")
    ax.set_ylabel("test macro-F1 (9 classes)")
    ax.set_title("active learning on a WM-811K-like pool: mean and min-max over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)
    random_labels = curves["random"][0][-1]
    lines = [
        f"Random sampling's final mean macro-F1: {target:.3f} with {random_labels:.0f} labels.",
        "",
        "| strategy | final macro-F1 (mean, min–max) | labels to reach random's final | share of random's labels "
        "| rare-class wafers queried (mean) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s, (xs, mean, lo, hi, rare) in curves.items():
        need = labels_to_reach(xs, mean, target)
        lines.append(
            f"| {s} | {mean[-1]:.3f} ({lo[-1]:.3f}–{hi[-1]:.3f}) | "
            f"{'not reached' if need is None else f'{need:.0f}'} | "
            f"{'—' if need is None else f'{need / random_labels:.0%}'} | {rare:.1f} |"
        )
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    return table


def arg_record(args) -> dict[str, str]:
    return {k: str(v) for k, v in vars(args).items() if k != "resume"}


def resumed_rows(args) -> list[dict]:
    """Finished (strategy, seed) runs of an earlier results.json with the same arguments, if ``--resume``."""
    path = args.out / "results.json"
    if not (args.resume and path.exists()):
        return []
    old = json.loads(path.read_text())
    if old["args"] != arg_record(args):
        raise SystemExit(f"--resume: {path} was made with other arguments: {old['args']}")
    runs: dict[tuple, list] = {}
    for r in old["rows"]:
        runs.setdefault((r["strategy"], r["seed"]), []).append(r)
    kept = [r for run_rows in runs.values() if len(run_rows) == args.rounds + 1 for r in run_rows]
    print(f"resuming: {len(kept) // (args.rounds + 1)} finished runs kept from {path}")
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--seed-per-class", type=int, default=5)
    ap.add_argument("--pool", type=int, default=3000)
    ap.add_argument("--test-per-class", type=int, default=80)
    ap.add_argument("--size", type=int, default=32, help="model input side (the pipeline uses 64)")
    ap.add_argument("--steps", type=int, default=250, help="optimiser steps per retraining")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--mc-samples", type=int, default=20)
    ap.add_argument("--prefilter", type=float, default=5.0)
    ap.add_argument("--data-seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/active_learning"))
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished runs of an interrupted results.json made with the same arguments",
    )
    args = ap.parse_args()
    if "random" not in args.strategies:
        args.strategies.insert(0, "random")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data(args)
    mix = {CLASSES[c]: int((data["unlabeled"].labels == c).sum()) for c in range(len(CLASSES))}
    print(
        f"pool {len(data['unlabeled'])} wafers, class mix {mix}; test {len(data['test'])}; "
        f"seed set {args.seed_per_class}/class"
    )
    rows, started = resumed_rows(args), time.perf_counter()
    done = {(r["strategy"], r["seed"]) for r in rows}
    jobs = [(s, seed) for seed in range(args.seeds) for s in args.strategies]
    for strategy, seed in tqdm([j for j in jobs if j not in done], desc="strategy x seed", unit="run"):
        rows += run(strategy, seed, data, args)
        (args.out / "results.json").write_text(json.dumps({"args": arg_record(args), "rows": rows}, indent=1))
    print(summarise(rows, args.out))
    print(
        f"{len(jobs)} runs x {args.rounds + 1} trainings in {time.perf_counter() - started:.0f} s; "
        f"plot {args.out / 'curve.png'}"
    )


if __name__ == "__main__":
    main()
