"""The promotion gate: a challenger replaces the champion only when every rule passes.

Both versions are measured on the same frozen test split — each source apart when it mixes
generated maps with a fab's files (:func:`gate_splits`) — and on real labeled wafers when
present, through their ONNX exports and the inference engine: macro-F1, recall per class, mask
IoU, p95 batch-1 latency; the challenger's ONNX parity comes from its export tags. Rules
(``gate`` in ``params.yaml``):

* ``macro_f1``: challenger >= champion - ``max_macro_f1_drop`` (on each test source, and on real data when present);
* ``class_recall``: no class's recall drops by more than ``max_class_recall_drop``;
* ``onnx_parity``: the challenger's export passed its parity check (when ``require_onnx_parity``);
* ``<split>_macro_f1_difference`` (reported, judged by no rule): challenger minus champion
  macro-F1 with its 95 % interval, both scored on the same lots resampled whole — a drop or gain
  inside it is one this split's lots cannot tell from chance;
* ``latency``: challenger p95 <= ``max_latency_ratio`` x champion p95;
* ``shadow_agreement`` / ``shadow_labeled_accuracy``: on live traffic (the shadow report of this
  challenger beside this champion, when it covers ``min_shadow_wafers``): agreement above a floor,
  accuracy on the labeled wafers not worse (``max_shadow_accuracy_drop``); with ``require_shadow``
  a challenger without such a report is refused until the shadow has seen enough wafers.

Pass: alias ``champion`` moves to the challenger, the old champion becomes ``previous`` and the
``challenger`` alias is removed. Fail: nothing moves. The decision, every rule's values and the
reason are tagged on the challenger's model version (``gate.*``) so the MLflow UI shows why.

Example:
    >>> decision = run_gate("waferflow-wafer-classifier", "7", test_arrays, GateConfig())  # doctest: +SKIP
    >>> decision["decision"]  # doctest: +SKIP
    'promoted'
"""

from __future__ import annotations

import getpass
import re
import time
from datetime import datetime, timezone

import numpy as np
from mlflow import MlflowClient

from waferflow.data.arrays import WaferArrays
from waferflow.evaluation.intervals import lot_intervals
from waferflow.evaluation.metrics import classification_metrics, mask_metrics
from waferflow.registry.aliases import PREVIOUS, AliasMoved, alias_lock, move_champion
from waferflow.registry.gate_config import GateConfig
from waferflow.registry.register import CHAMPION, tag_version
from waferflow.patterns.features import original_shapes

__all__ = [
    "GateConfig",
    "gate_splits",
    "measure_version",
    "lot_differences",
    "decide",
    "run_gate",
    "promote",
    "rollback",
    "PREVIOUS",
]

PREDICTED = "_predicted"  # a measured split's predicted classes, until lot_differences takes them


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def gate_splits(arrays: WaferArrays) -> dict[str, WaferArrays]:
    """The test split as the gate judges it: ``{"test": arrays}``, or one ``test/<source>`` per
    source when it mixes sources (generated maps beside a fab's files) — never pooled, so a better
    score on one source cannot hide a worse one on the other."""
    parts = arrays.by_source()
    if len(parts) < 2:
        return {"test": arrays}
    # rule names become MLflow tag keys: only the characters those allow
    return {f"test/{re.sub(r'[^A-Za-z0-9_.-]', '_', source)}": part for source, part in parts.items()}


def measure_version(
    model_name: str, version: str, arrays: WaferArrays, real: WaferArrays | None, latency_runs: int
) -> dict:
    """Quality and latency of one registered version, through its ONNX export."""
    from waferflow.inference.engine import InferenceEngine

    engine = InferenceEngine.from_registry(model_name, version=version, threads=1)

    def quality(a: WaferArrays) -> dict:
        probs, masks = engine.predict_arrays(a.grids, original_shapes(a.frame, a.grids))
        cls = classification_metrics(a.labels, probs)
        return {
            "macro_f1": cls["macro_f1"],
            "recall": {c: v["recall"] for c, v in cls["per_class"].items() if v["support"] > 0},
            "mask_iou": mask_metrics(a.targets, masks)["mean_iou"],
            PREDICTED: probs.argmax(1),  # for the paired intervals (:func:`lot_differences`); not kept
        }

    out = {"version": str(version), **{n: quality(a) for n, a in gate_splits(arrays).items()}}
    out["real"] = quality(real) if real is not None else None
    shapes = original_shapes(arrays.frame, arrays.grids)
    singles = [i % len(arrays.grids) for i in range(latency_runs + 10)]
    times = []
    for i, k in enumerate(singles):  # batch 1, the served path: the graph and the pattern trees when exported
        start = time.perf_counter()
        engine.predict_arrays(arrays.grids[k][None], shapes[k : k + 1])
        if i >= 10:  # warm-up
            times.append(time.perf_counter() - start)
    out["p95_latency_ms"] = round(float(np.percentile(times, 95) * 1000), 3)
    return out


def lot_differences(
    champion: dict, challenger: dict, splits: dict[str, WaferArrays | None], level: float = 0.95
) -> dict[str, dict]:
    """Per split both versions predicted and whose wafers name their lot: the challenger's
    macro-F1 minus the champion's, with ``level`` intervals of that difference and of each class's
    recall difference, both versions scored on the same resampled lots
    (:func:`waferflow.evaluation.intervals.lot_intervals`).
    Takes the predictions out of ``champion`` and ``challenger`` (they are not JSON)."""
    out = {}
    for name, arrays in splits.items():
        ch, cp = challenger.get(name) or {}, champion.get(name) or {}
        predicted = ch.pop(PREDICTED, None), cp.pop(PREDICTED, None)
        if arrays is None or any(p is None for p in predicted) or arrays.frame is None or "lot_id" not in arrays.frame:
            continue
        out[name] = {
            "macro_f1": round(ch["macro_f1"] - cp["macro_f1"], 6),
            "interval": lot_intervals(
                arrays.labels, predicted[0], arrays.frame["lot_id"].to_numpy(), level, baseline=predicted[1]
            ),
        }
    return out


def decide(
    champion: dict,
    challenger: dict,
    parity_passed: bool,
    cfg: GateConfig,
    shadow: dict | None = None,
    differences: dict[str, dict] | None = None,
) -> tuple[bool, list[dict]]:
    """Apply the rules; returns (passed, rules) with each rule's measured values. ``shadow`` is a
    shadow report (:func:`waferflow.monitoring.shadow.shadow_report`), or None; ``differences``
    (:func:`lot_differences`) are reported beside the rules of their split, judged by none."""
    rules = []

    def rule(name: str, passed: bool, challenger_value, champion_value, limit: str) -> None:
        rules.append(
            {
                "rule": name,
                "passed": bool(passed),
                "challenger": challenger_value,
                "champion": champion_value,
                "limit": limit,
            }
        )

    for split in [k for k in challenger if k == "real" or k.startswith("test")]:
        if challenger[split] is None or champion.get(split) is None:
            continue
        ch, cp = challenger[split], champion[split]
        rule(
            f"{split}_macro_f1",
            ch["macro_f1"] >= cp["macro_f1"] - cfg.max_macro_f1_drop,
            ch["macro_f1"],
            cp["macro_f1"],
            f">= champion - {cfg.max_macro_f1_drop}",
        )
        drops = {c: round(cp["recall"][c] - ch["recall"].get(c, 0.0), 6) for c in cp["recall"]}
        worst = max(drops, key=drops.get)
        rule(
            f"{split}_class_recall",
            drops[worst] <= cfg.max_class_recall_drop,
            {worst: ch["recall"].get(worst, 0.0)},
            {worst: cp["recall"][worst]},
            f"no class recall drops by more than {cfg.max_class_recall_drop} (worst: {worst}, {drops[worst]:+.3f})",
        )
        rule(f"{split}_mask_iou", True, ch["mask_iou"], cp["mask_iou"], "reported")
        diff = (differences or {}).get(split)
        if diff is not None and diff["interval"]["macro_f1"] is not None:
            low, high = diff["interval"]["macro_f1"]
            rule(
                f"{split}_macro_f1_difference",
                True,
                diff["macro_f1"],
                None,
                f"reported: challenger - champion, {diff['interval']['level']:.0%} interval {low:+.4f} to "
                f"{high:+.4f} over {diff['interval']['lots']} lots resampled",
            )
    if cfg.require_onnx_parity:
        rule("onnx_parity", parity_passed, parity_passed, None, "export parity check passed")
    rule(
        "latency_p95_ms",
        challenger["p95_latency_ms"] <= cfg.max_latency_ratio * champion["p95_latency_ms"],
        challenger["p95_latency_ms"],
        champion["p95_latency_ms"],
        f"<= {cfg.max_latency_ratio} x champion",
    )
    _shadow_rules(rule, shadow, str(challenger.get("version")), str(champion.get("version")), cfg)
    return all(r["passed"] for r in rules), rules


def _shadow_rules(rule, shadow: dict | None, challenger: str, champion: str, cfg: GateConfig) -> None:
    """The rules on live traffic, when the shadow report is about this pair and large enough."""
    pair = (
        shadow is not None
        and str(shadow["challenger"]["model_version"]) == challenger
        and str(shadow["champion"]["model_version"]) == champion
    )
    if not pair or shadow["wafers"] < cfg.min_shadow_wafers:
        if cfg.require_shadow:
            have = (
                "no shadow report"
                if shadow is None
                else f"the report pairs v{shadow['challenger']['model_version']} with "
                f"v{shadow['champion']['model_version']}"
                if not pair
                else f"{shadow['wafers']} wafers"
            )
            rule(
                "shadow",
                False,
                have,
                None,
                f"gate.require_shadow: a shadow report of v{challenger} beside "
                f"champion v{champion} over >= {cfg.min_shadow_wafers} wafers",
            )
        return
    rule(
        "shadow_agreement",
        shadow["agreement"] >= cfg.min_shadow_agreement,
        shadow["agreement"],
        None,
        f">= {cfg.min_shadow_agreement} over {shadow['wafers']} live wafers",
    )
    lab = shadow.get("labeled")
    if lab:
        rule(
            "shadow_labeled_accuracy",
            lab["challenger_accuracy"] >= lab["champion_accuracy"] - cfg.max_shadow_accuracy_drop,
            lab["challenger_accuracy"],
            lab["champion_accuracy"],
            f">= champion - {cfg.max_shadow_accuracy_drop} on {lab['wafers']} labeled live wafers",
        )


def _compare(
    client: MlflowClient,
    model_name: str,
    version: str,
    champion: str,
    arrays: WaferArrays,
    real: WaferArrays | None,
    parity: bool,
    cfg: GateConfig,
    shadow: dict | None,
) -> dict:
    """Measure both versions, apply the rules, move the aliases when the challenger passes."""
    try:
        measured = {
            "challenger": measure_version(model_name, version, arrays, real, cfg.latency_runs),
            "champion": measure_version(model_name, champion, arrays, real, cfg.latency_runs),
        }
    except FileNotFoundError as exc:  # a version without an ONNX export cannot be compared
        if not cfg.force_promote:
            return {
                "decision": "refused",
                "rules": [],
                "reason": f"cannot compare: {exc}; champion stays version "
                f"{champion} (export it, or `waferflow promote {version}`)",
            }
        passed, rules, measured = False, [], None
    else:
        splits = {**gate_splits(arrays), "real": real}
        differences = lot_differences(measured["champion"], measured["challenger"], splits)
        measured["difference"] = differences
        passed, rules = decide(measured["champion"], measured["challenger"], parity, cfg, shadow, differences)
    failed = [r["rule"] for r in rules if not r["passed"]] or ["comparison"]
    if not (passed or cfg.force_promote):
        return {
            "decision": "refused",
            "rules": rules,
            "measured": measured,
            "reason": f"failed: {', '.join(failed)}; champion stays version {champion}",
        }
    try:
        with alias_lock():
            previous = move_champion(client, model_name, version, expected=champion)
    except AliasMoved as exc:  # another gate or a manual promotion won the race while we measured
        return {"decision": "refused", "rules": rules, "measured": measured, "reason": str(exc)}
    why = "every rule passed" if passed else f"forced by gate.force_promote despite failing {', '.join(failed)}"
    return {
        "decision": "promoted" if passed else "forced",
        "rules": rules,
        "measured": measured,
        "reason": f"{why}; version {previous} is now '{PREVIOUS}'",
    }


def run_gate(
    model_name: str,
    version: str,
    arrays: WaferArrays,
    cfg: GateConfig,
    real: WaferArrays | None = None,
    shadow: dict | None = None,
) -> dict:
    """Gate ``version`` against the current champion; move aliases on pass; tag the decision.
    ``shadow``: the latest shadow report (its rules apply when it is about this pair)."""
    client = MlflowClient()
    version = str(version)
    champion = client.get_registered_model(model_name).aliases.get(CHAMPION)
    tags = client.get_model_version(model_name, version).tags
    parity = tags.get("onnx_parity_passed") == "True"
    result: dict = {
        "model_name": model_name,
        "challenger_version": version,
        "champion_version": None if champion is None else str(champion),
        "decided_at": _now(),
    }
    already = champion is not None and str(champion) == version and "gate.decision" in tags
    if already:  # a re-run (dvc repro after an unrelated change): keep the decision on record, re-tag nothing
        result.update(
            decision=tags["gate.decision"],
            rules=[],
            already_decided=True,
            reason=f"already champion; decided {tags.get('gate.decided_at')}: {tags.get('gate.reason')}",
        )
    elif champion is None or str(champion) == version:
        result.update(
            decision="champion", rules=[], reason="no other champion to compare with: this version is the champion"
        )
        if champion is None:
            with alias_lock():
                move_champion(client, model_name, version, expected=None)
    else:
        result.update(_compare(client, model_name, version, str(champion), arrays, real, parity, cfg, shadow))
    if not already:
        tag_version(
            model_name,
            version,
            {
                "gate.decision": result["decision"],
                "gate.reason": result["reason"],
                "gate.decided_at": result["decided_at"],
                "gate.champion_compared": result["champion_version"],
                **{
                    f"gate.rule.{r['rule']}": f"{'PASS' if r['passed'] else 'FAIL'}: "
                    f"challenger {r['challenger']} vs champion {r['champion']} "
                    f"({r['limit']})"
                    for r in result["rules"]
                },
            },
        )
    result["aliases"] = {k: str(v) for k, v in client.get_registered_model(model_name).aliases.items()}
    return result


def promote(model_name: str, version: str, reason: str = "") -> dict:
    """Manual override: make ``version`` the champion, recorded as such on the version."""
    client = MlflowClient()
    client.get_model_version(model_name, str(version))  # raises if it does not exist
    with alias_lock():
        current = client.get_registered_model(model_name).aliases.get(CHAMPION)
        previous = move_champion(client, model_name, str(version), expected=current)
    tag_version(
        model_name,
        str(version),
        {
            "gate.decision": "manual_promote",
            "gate.decided_at": _now(),
            "gate.reason": reason or "manual promotion",
            "gate.by": getpass.getuser(),
        },
    )
    return {"champion": str(version), PREVIOUS: previous}


def rollback(model_name: str) -> dict:
    """Champion <- previous; the demoted version is tagged, and ``previous`` is cleared."""
    client = MlflowClient()
    with alias_lock():
        aliases = client.get_registered_model(model_name).aliases
        if PREVIOUS not in aliases:
            raise ValueError(f"{model_name} has no '{PREVIOUS}' version to roll back to")
        demoted, restored = str(aliases[CHAMPION]), str(aliases[PREVIOUS])
        client.set_registered_model_alias(model_name, CHAMPION, restored)
        client.delete_registered_model_alias(model_name, PREVIOUS)
    tag_version(model_name, demoted, {"gate.rolled_back_at": _now(), "gate.rolled_back_by": getpass.getuser()})
    return {"champion": restored, "demoted": demoted}
