"""Label efficiency of the active-learning strategies, with the generator or real labels as the oracle.

A fab-like setting: a WM-811K-like unlabeled pool (74 % ``none``, rare classes well under 1 %),
a small balanced seed set (``--seed-per-class`` per class, with masks), and a fixed balanced
test set on die layouts the pool never uses. Each round a strategy picks ``--budget`` pool
wafers; the generator's true class is revealed for them (class label only — annotators draw no
masks, so their mask loss is ignored); the model is retrained from scratch for a fixed number of
steps; macro-F1 on the test set is recorded. Every strategy starts from the same seed set and
seed, over ``--seeds`` repetitions.

``--oracle real`` runs the same rounds on real WM-811K maps (``--real``, default ``../shared/data``,
split by lot as :mod:`waferflow.evaluation.real_maps` does): the pool is the *dev* lots' maps,
whose real labels are revealed as the strategies pick them; the seed set is ``--seed-per-class``
maps per class of that pool; the test set is the real *test* lots. Each training fine-tunes the
pipeline's generated-map model (``--init``, default ``models/weights.pt``, run ``make pipeline``
first) as ``train.init_from`` does, and one more fit on every dev label gives the all-labels
reference the strategies are compared with (``--out`` default
``benchmarks/results/active_learning_real``).

Outputs (``--out``, default ``benchmarks/results/active_learning``): ``curve.png`` (test
macro-F1 vs labels used, mean and min–max band per strategy), ``results.json`` (every run), and
``table.md``: labels each strategy needs to reach random sampling's final mean macro-F1, and the
ratio to random's labels.

    .venv/bin/python benchmarks/active_learning.py [--seeds 3 --rounds 6 --budget 40 --steps 250]
    .venv/bin/python benchmarks/active_learning.py --oracle real --strategies coreset --seeds 2 --rounds 3 --budget 80
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
from waferflow.config import load_params  # noqa: E402
from waferflow.data.arrays import IGNORE_INDEX, WaferArrays  # noqa: E402
from waferflow.data.records import read_frame, write_records  # noqa: E402
from waferflow.data.split import resize_frame  # noqa: E402
from waferflow.evaluation.real_maps import real_arrays  # noqa: E402
from waferflow.fileio import write_json  # noqa: E402
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


REAL_TITLE = "active learning on real WM-811K maps (dev-lot pool, test lots scored)"


def load_real_data(args) -> dict[str, WaferArrays]:
    """The dev lots' maps as both the seed-set source and the pool (one array: a map is either
    labeled or not), the test lots' maps as the test set."""
    parts, info = real_arrays(args.real, (args.size, args.size))
    if parts is None:
        raise SystemExit(f"--oracle real: no real labeled maps: {info['reason']} (pass --real DIR)")
    return {"labeled": parts["dev"], "unlabeled": parts["dev"], "test": parts["test"]}


def fit(train: WaferArrays, seed: int, args) -> torch.nn.Module:
    """From scratch (generator oracle) or fine-tuned from ``--init`` (real oracle)."""
    return fit_quick(
        train, steps=args.steps, seed=seed, lr=args.lr, batch_size=args.batch_size, **getattr(args, "fit_from", {})
    )


def test_macro_f1(net, data: dict[str, WaferArrays]) -> float:
    test = score_pool(net, data["test"].grids, batch_size=512)
    return float(
        f1_score(
            data["test"].labels, test.probs.argmax(1), average="macro", labels=range(len(CLASSES)), zero_division=0
        )
    )


def run(strategy: str, seed: int, data: dict[str, WaferArrays], args) -> list[dict]:
    rng = np.random.default_rng(seed)
    lab = data["labeled"]
    seed_idx = np.concatenate(
        [rng.choice(np.flatnonzero(lab.labels == c), args.seed_per_class, replace=False) for c in range(len(CLASSES))]
    )
    pool = data["unlabeled"]
    shared = lab is pool  # real oracle: the seed set is part of the pool
    taken = np.zeros(len(pool), bool)
    taken[seed_idx] = shared
    curve = []
    for rnd in range(args.rounds + 1):
        picked = np.flatnonzero(taken)
        train = pool.take(picked) if shared else WaferArrays.concat(lab.take(seed_idx), pool.take(picked))
        net = fit(train, seed, args)
        f1 = test_macro_f1(net, data)
        curve.append(
            {
                "strategy": strategy,
                "seed": seed,
                "round": rnd,
                "labels": int(len(train)),
                "macro_f1": float(f1),
                "rare_in_queries": int(
                    np.isin(
                        pool.labels[np.setdiff1d(picked, seed_idx) if shared else picked],
                        [CLASSES.index(c) for c in ("Near-full", "Donut", "Random", "Scratch")],
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


def summarise(rows: list[dict], out: Path, title: str = "active learning on a WM-811K-like pool") -> str:
    strategies = list(dict.fromkeys(r["strategy"] for r in rows if r["strategy"] != "all labels"))
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
    ax.set_title(f"{title}: mean and min-max over seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)
    random_labels = curves["random"][0][-1]
    lines = [f"Random sampling's final mean macro-F1: {target:.3f} with {random_labels:.0f} labels."]
    for r in rows:
        if r["strategy"] == "all labels":
            lines.append(f"All {r['labels']} labels (seed {r['seed']}): macro-F1 {r['macro_f1']:.3f}.")
    lines += [
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
    return {k: str(v) for k, v in vars(args).items() if k not in ("resume", "fit_from")}


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
    kept = [
        r
        for (strategy, _), run_rows in runs.items()
        if len(run_rows) == (1 if strategy == "all labels" else args.rounds + 1)
        for r in run_rows
    ]
    print(f"resuming: {len(kept) // (args.rounds + 1)} finished runs kept from {path}")
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--oracle", choices=("generator", "real"), default="generator")
    ap.add_argument("--real", type=Path, default=Path("../shared/data"), help="real labeled maps (--oracle real)")
    ap.add_argument("--init", type=Path, default=Path("models/weights.pt"), help="model to fine-tune (--oracle real)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--seed-per-class", type=int, default=5)
    ap.add_argument("--pool", type=int, default=3000)
    ap.add_argument("--test-per-class", type=int, default=80)
    ap.add_argument("--size", type=int, default=None, help="model input side (generator: 32; real: the pipeline's)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per retraining (250; real: 120)")
    ap.add_argument("--batch-size", type=int, default=None, help="32; real: 64")
    ap.add_argument("--lr", type=float, default=None, help="0.003; real: 0.0005, fine-tuning")
    ap.add_argument("--mc-samples", type=int, default=20)
    ap.add_argument("--prefilter", type=float, default=5.0)
    ap.add_argument("--data-seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None, help="benchmarks/results/active_learning[_real]")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished runs of an interrupted results.json made with the same arguments",
    )
    args = ap.parse_args()
    if "random" not in args.strategies:
        args.strategies.insert(0, "random")
    real = args.oracle == "real"
    defaults = {"steps": (250, 120), "batch_size": (32, 64), "lr": (0.003, 0.0005)}
    for name, (generator, fine_tune) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, fine_tune if real else generator)
    args.out = args.out or Path("benchmarks/results/active_learning" + ("_real" if real else ""))
    if real:
        from waferflow.registry.pyfunc import load_weights

        params = load_params("params.yaml")
        args.size = args.size or params.preprocess.image_size[0]
        args.fit_from = {"model": params.model, "init": load_weights(args.init).net}
    args.size = args.size or 32
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_real_data(args) if real else load_data(args)
    mix = {CLASSES[c]: int((data["unlabeled"].labels == c).sum()) for c in range(len(CLASSES))}
    print(
        f"pool {len(data['unlabeled'])} wafers, class mix {mix}; test {len(data['test'])}; "
        f"seed set {args.seed_per_class}/class"
    )
    rows, started = resumed_rows(args), time.perf_counter()
    done = {(r["strategy"], r["seed"]) for r in rows}
    jobs = [(s, seed) for seed in range(args.seeds) for s in args.strategies]
    if real and ("all labels", 0) not in done:
        jobs.append(("all labels", 0))
    for strategy, seed in tqdm([j for j in jobs if j not in done], desc="strategy x seed", unit="run"):
        if strategy == "all labels":
            net = fit(data["unlabeled"], seed, args)
            rows.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "round": 0,
                    "labels": len(data["unlabeled"]),
                    "macro_f1": test_macro_f1(net, data),
                    "rare_in_queries": 0,
                }
            )
        else:
            rows += run(strategy, seed, data, args)
        write_json(args.out / "results.json", {"args": arg_record(args), "rows": rows})
    print(summarise(rows, args.out, REAL_TITLE if real else "active learning on a WM-811K-like pool"))
    print(
        f"{len(jobs)} runs x {args.rounds + 1} trainings in {time.perf_counter() - started:.0f} s; "
        f"plot {args.out / 'curve.png'}"
    )


if __name__ == "__main__":
    main()
