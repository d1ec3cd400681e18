"""Train on a fab's own maps: what each way of using real labels gives on the real test lots.

The real maps (``--real``, default ``../shared/data``: the WM-811K subset) are split by lot with
the project's fixed split (:mod:`waferflow.evaluation.real_maps`, a salted hash of the lot name:
no seed to tune): the *dev* lots are this benchmark's training lots, the *test* lots are only
scored. Every arm trains the pipeline's model (``model`` in ``params.yaml``) for the same number
of optimiser steps (``--steps``, batch 64, the training augmentation) and is scored on the same
real test lots; one line per arm:

* ``generated only`` — the default pipeline's model (``--weights``, trained on generated maps;
  no real label).
* ``real only`` — from scratch on the real training lots.
* ``generated + real`` — from scratch on the real training lots plus as many generated training
  maps (``data/processed/train.parquet``).
* ``pre-train, fine-tune`` — ``--weights`` fine-tuned on the real training lots (lower LR):
  ``train.init_from`` in the pipeline.
* ``+ GAN maps (rare classes)`` — the fine-tune arm plus the augment stage's WGAN-GP maps for the
  real classes under ``augment.min_count``, trained on the real training lots only.
* ``fine-tune / + GAN maps, Near-full and Donut <= K`` (``--starve K ...``) — the GAN ablation on
  real maps: the two rarest real classes cut to at most ``K`` training maps each (the same maps for
  every seed), fine-tuned without and with the GAN maps the augment stage makes from that starved
  set; the recall of both classes against ``K`` is drawn in ``<out>_starved.png``.
* ``active learning 10 % / 25 %`` — fine-tuned on the labels of 10 % / 25 % of the real training
  maps, picked by the pre-trained model with ``al.strategy`` (one round, the rest unlabeled).
* ``fine-tune, 25 % of lots labeled`` — fine-tuned on the labels of a random quarter of the real
  training lots (the baseline of the next arm).
* ``+ pseudo-labels (semi-supervised)`` — the same labels, then self-training: the fine-tuned
  model labels the other lots' maps, those it gives a confidence of at least ``--pseudo-threshold``
  join as pseudo-labeled maps, and the pre-trained model is fine-tuned again on both.

Run after ``make pipeline`` (it reads ``models/weights.pt`` and ``data/processed``):

    .venv/bin/python benchmarks/real_data.py [--steps 240 --seeds 1]
    .venv/bin/python benchmarks/real_data.py --starve 5 16 38 --seeds 2 --out benchmarks/results/real_starved \
        --arms "fine-tune, Near-full and Donut <= 38" "+ GAN maps, Near-full and Donut <= 38" ...

Writes ``benchmarks/results/real_data.json`` and ``benchmarks/results/real_data.md``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from waferflow.classes import CLASSES
from waferflow.config import load_params
from waferflow.data.arrays import IGNORE_INDEX, WaferArrays
from waferflow.evaluation.evaluate import evaluate_arrays
from waferflow.evaluation.real_maps import real_arrays
from waferflow.fileio import save_figure, write_json, write_text
from waferflow.gan.ablation import starved_rows
from waferflow.models.scoring import score_pool
from waferflow.quickfit import fit_quick
from waferflow.registry.pyfunc import load_weights

FINE_TUNE_LR = 0.0005  # a quarter of train.lr: keep what the generated maps taught, adapt to the fab's
SCRATCH_LR = 0.002


def _scores(net, test: WaferArrays) -> dict:
    cls = evaluate_arrays(net, test)["classification"]
    recalls = {c: cls["per_class"][c]["recall"] for c in CLASSES}
    supported = [recalls[c] for c in CLASSES if cls["per_class"][c]["support"]]
    return {"macro_f1": cls["macro_f1"], "accuracy": cls["accuracy"], "min_recall": min(supported), "recall": recalls}


def _gan_maps(real: WaferArrays, params, out: Path) -> WaferArrays | None:
    """The augment stage's GAN maps for the real training lots' rare classes (class labels only)."""
    from waferflow.data.records import read_frame
    from waferflow.gan.augment import run_augment

    report = run_augment(real.grids, real.labels, params.augment, out, progress=False)
    path = out / "synthetic.parquet"
    if not report["kept_total"] or not path.is_file():
        return None
    synthetic = WaferArrays.from_frame(read_frame(path))
    synthetic.targets[:] = IGNORE_INDEX  # no per-die mask: only the class loss learns from them
    return synthetic


def _active_subset(pretrained, real: WaferArrays, share: float, strategy: str, seed: int) -> np.ndarray:
    """The ``share`` of the real training maps the pre-trained model asks labels for (one round)."""
    from waferflow.active.strategies import select

    budget = max(len(CLASSES), int(round(share * len(real))))
    scores = score_pool(pretrained, real.grids, mc_samples=8 if strategy in ("bald", "hybrid") else 0)
    picked, _ = select(
        strategy,
        budget,
        probs=scores.probs,
        mc_probs=scores.mc_probs,
        pool_emb=scores.emb,
        labeled_emb=scores.emb[:0],
        rng=np.random.default_rng(seed),
    )
    return np.asarray(picked)


def _quarter_of_lots(train: WaferArrays, seed: int) -> np.ndarray:
    """Rows of a random quarter of the training lots (the rest: their labels hidden)."""
    lots = train.frame["lot_id"].astype(str).to_numpy()
    names = np.unique(lots)
    chosen = np.random.default_rng(seed).choice(names, size=max(1, len(names) // 4), replace=False)
    return np.flatnonzero(np.isin(lots, chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("../shared/data"))
    parser.add_argument("--weights", type=Path, default=Path("models/weights.pt"))
    parser.add_argument("--steps", type=int, default=240, help="optimiser steps of every trained arm")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--pseudo-threshold", type=float, default=0.9, help="confidence a pseudo-label needs")
    parser.add_argument(
        "--starve", type=int, nargs="*", default=[], help="GAN ablation arms: Near-full and Donut cut to K maps"
    )
    parser.add_argument("--arms", nargs="*", default=None, help="run only these arms (names as in the table)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_data"))
    args = parser.parse_args()
    params = load_params("params.yaml")
    size = tuple(params.preprocess.image_size)
    parts, info = real_arrays(args.real, size)
    if parts is None:
        raise SystemExit(f"no real labeled maps: {info['reason']} (pass --real DIR)")
    train, test = parts["dev"], parts["test"]
    generated = WaferArrays.from_parquet("data/processed/train.parquet")
    pick = np.random.default_rng(0).choice(len(generated), size=min(len(train), len(generated)), replace=False)
    generated = generated.take(pick)
    pretrained = load_weights(args.weights)
    print(
        f"real training lots: {len(train)} maps; real test lots: {len(test)} maps; {args.steps} steps per arm; "
        f"{torch.get_num_threads()} threads on {platform.processor() or platform.machine()}",
        flush=True,
    )

    def fit(data: WaferArrays, seed: int, init=None) -> torch.nn.Module:
        lr = FINE_TUNE_LR if init is not None else SCRATCH_LR
        return fit_quick(data, steps=args.steps, seed=seed, model=params.model, lr=lr, batch_size=64, init=init)

    arms = {
        "generated only": lambda seed: pretrained,
        "real only": lambda seed: fit(train, seed),
        "generated + real": lambda seed: fit(WaferArrays.concat(train, generated), seed),
        "pre-train, fine-tune": lambda seed: fit(train, seed, init=pretrained.net),
    }
    with tempfile.TemporaryDirectory() as tmp:
        gan = {}

        def starved(keep: int | None) -> WaferArrays:
            """The training lots with Near-full and Donut cut to ``keep`` maps (the same for every seed)."""
            return train if keep is None else train.take(starved_rows(_names(train), keep, 0, STARVED))

        def gan_arm(seed: int, keep: int | None = None):
            data = starved(keep)
            if keep not in gan:  # one GAN per training set, shared by the seeds
                gan[keep] = _gan_maps(data, params, Path(tmp) / f"gan-{keep}")
            extra = () if gan[keep] is None else (gan[keep],)
            return fit(WaferArrays.concat(data, *extra), seed, init=pretrained.net)

        arms["+ GAN maps (rare classes)"] = gan_arm
        for keep in args.starve:
            arms[_starved_arm("fine-tune", keep)] = lambda seed, keep=keep: fit(
                starved(keep), seed, init=pretrained.net
            )
            arms[_starved_arm("+ GAN maps", keep)] = lambda seed, keep=keep: gan_arm(seed, keep)
        for share in (0.10, 0.25):
            arms[f"active learning {share:.0%}"] = lambda seed, share=share: fit(
                train.take(_active_subset(pretrained, train, share, params.al.strategy, seed)),
                seed,
                init=pretrained.net,
            )

        def labeled_quarter(seed: int):
            return fit(train.take(_quarter_of_lots(train, seed)), seed, init=pretrained.net)

        def semi_supervised(seed: int):
            labeled = _quarter_of_lots(train, seed)
            hidden = np.setdiff1d(np.arange(len(train)), labeled)
            teacher = fit(train.take(labeled), seed, init=pretrained.net)
            probs = score_pool(teacher, train.grids[hidden]).probs
            keep = probs.max(1) >= args.pseudo_threshold
            pseudo = train.take(hidden[keep])
            pseudo.labels = probs[keep].argmax(1).astype(np.int64)  # the teacher's answers, not the true labels
            print(
                f"  pseudo-labels: {keep.sum()} of {len(hidden)} hidden maps at confidence >= "
                f"{args.pseudo_threshold} ({(pseudo.labels == train.labels[hidden[keep]]).mean():.1%} right)",
                flush=True,
            )
            return fit(WaferArrays.concat(train.take(labeled), pseudo), seed, init=pretrained.net)

        arms["fine-tune, 25 % of lots labeled"] = labeled_quarter
        arms["+ pseudo-labels (semi-supervised)"] = semi_supervised
        unknown = set(args.arms or ()) - set(arms)
        if unknown:
            raise SystemExit(f"unknown arm(s) {sorted(unknown)}; arms: {list(arms)}")
        rows = []
        for name in args.arms or list(arms):  # in the order asked: the most telling first
            make = arms[name]
            for seed in range(args.seeds) if name != "generated only" else [0]:
                started = time.perf_counter()
                net = make(seed)
                seconds = time.perf_counter() - started
                row = {"arm": name, "seed": seed, "seconds": round(seconds, 1), **_scores(net, test)}
                rows.append(row)
                print(
                    f"{name} (seed {seed}): macro-F1 {row['macro_f1']:.4f}, min recall {row['min_recall']:.3f}, "
                    f"{seconds:.0f} s",
                    flush=True,
                )
                _write(args, info, train, test, rows)  # after every arm: an interrupted run keeps what it measured
    print(_table(rows))
    if args.starve:
        _plot_starved(rows, args.out.parent / f"{args.out.name}_starved.png")


STARVED = ("Near-full", "Donut")  # the rarest real classes (WM-811K: 149 Near-full maps in all)


def _starved_arm(kind: str, keep: int) -> str:
    return f"{kind}, {' and '.join(STARVED)} <= {keep}"


def _names(arrays: WaferArrays) -> np.ndarray:
    return np.asarray(CLASSES)[arrays.labels]


def _plot_starved(rows: list[dict], path: Path) -> None:
    """Recall of each starved class against the maps kept, without and with GAN maps (mean, min-max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = pd.DataFrame([r for r in rows if " <= " in r["arm"]])
    if runs.empty:
        return
    runs["kind"] = runs["arm"].str.split(",").str[0]
    runs["keep"] = runs["arm"].str.rsplit(" <= ", n=1).str[1].astype(int)
    fig, axes = plt.subplots(1, len(STARVED), figsize=(5 * len(STARVED), 3.8), sharey=True)
    for ax, cls in zip(axes, STARVED):
        for kind, group in runs.groupby("kind"):
            recall = group.assign(r=[r[cls] for r in group["recall"]]).groupby("keep")["r"].agg(["mean", "min", "max"])
            ax.plot(recall.index, recall["mean"], marker="o", label=kind)
            ax.fill_between(recall.index, recall["min"], recall["max"], alpha=0.15)
        ax.set_xscale("log")
        ax.set_xticks(sorted(runs["keep"].unique()), [str(k) for k in sorted(runs["keep"].unique())])
        ax.minorticks_off()
        ax.set_xlabel(f"real {cls} training maps kept")
        ax.set_title(f"{cls} recall on the real test lots")
    axes[0].set_ylabel("recall")
    axes[0].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def _write(args, info: dict, train: WaferArrays, test: WaferArrays, rows: list[dict]) -> None:
    table = _table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "real": {k: v for k, v in info.items() if k != "reason"},
        "train_maps": len(train),
        "test_maps": len(test),
        "steps": args.steps,
        "pseudo_threshold": args.pseudo_threshold,
        "seeds": args.seeds,
        "weights": str(args.weights),
        "machine": f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}",
        "rows": rows,
    }
    write_json(args.out.with_suffix(".json"), result, sort_keys=False, default=str)
    write_text(args.out.with_suffix(".md"), table + "\n")


def _table(rows: list[dict]) -> str:
    runs = pd.DataFrame([r for r in rows if "macro_f1" in r])
    lines = [
        "| arm | macro-F1 | min recall | " + " | ".join(CLASSES) + " | seconds |",
        "| --- | --- | --- | " + " | ".join("---" for _ in CLASSES) + " | --- |",
    ]
    for name, group in runs.groupby("arm", sort=False):
        recall = {c: np.mean([r[c] for r in group["recall"]]) for c in CLASSES}
        spread = f" ± {group['macro_f1'].std():.3f}" if len(group) > 1 else ""
        lines.append(
            f"| {name} | {group['macro_f1'].mean():.3f}{spread} | {group['min_recall'].mean():.2f} | "
            + " | ".join(f"{recall[c]:.2f}" for c in CLASSES)
            + f" | {group['seconds'].mean():.0f} |"
        )
    lines += [f"| {r['arm']} | {r['note']} |" for r in rows if "note" in r]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
