"""Shadow deployment: the champion answers, the challenger runs on the same input in the shadow.

:class:`ShadowEngine` returns the champion's predictions as soon as they are computed; the same
wafers are handed to a single background worker that runs the challenger. The caller never waits
for the challenger: handing work over is a non-blocking queue put, and when ``max_pending``
batches are already waiting the shadow copy is dropped and counted (``dropped``) rather than
queued, so a slow challenger cannot build a backlog. On a shared CPU host the worker thread
lowers its own scheduling priority (``nice``, Linux: per thread), so the challenger only gets the
cycles the champion leaves idle (load the challenger with ``threads=1``: ONNX Runtime then runs on
that thread instead of its own pool); ``benchmarks/shadow_overhead.py`` measures what remains.
Both engines log to the prediction log with their alias (``champion`` / ``challenger``), which is
what :func:`shadow_report` reads.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

__all__ = ["ShadowEngine", "shadow_report"]

log = logging.getLogger(__name__)


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority (Linux schedules threads apart; elsewhere a no-op)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: the shadow still runs
        log.warning("shadow: could not lower the worker's priority (%s); it competes with the champion", exc)


class ShadowEngine:
    """``nice``: the worker thread's priority (19 = lowest, None = unchanged)."""

    def __init__(self, champion, challenger, max_pending: int = 8, nice: int | None = 19) -> None:
        self.champion, self.challenger = champion, challenger
        self.max_pending = max_pending
        self.dropped = self.failed = self.shadowed = 0
        self.agreed = self.compared = 0  # wafers both answered, and those they gave the same class
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="waferflow-shadow",
            initializer=None if nice is None else _lower_priority,
            initargs=(nice,),
        )
        self._lock = threading.Lock()

    def predict(self, wafers, **kwargs) -> list[dict]:
        """The champion's predictions; the challenger gets the same wafers in the background."""
        results = self.champion.predict(wafers, **kwargs)
        if self._slots.acquire(blocking=False):
            try:
                self._pool.submit(self._shadow, wafers, kwargs, [r["class"] for r in results])
                return results
            except RuntimeError:  # closed (a hot swap retired this pair while the request ran): no shadow
                self._slots.release()
        with self._lock:
            self.dropped += 1
        return results

    def _shadow(self, wafers, kwargs, champion_classes: list[str]) -> None:
        try:
            answers = self.challenger.predict(wafers, **kwargs)
            with self._lock:
                self.shadowed += 1
                self.compared += len(answers)
                self.agreed += sum(a["class"] == c for a, c in zip(answers, champion_classes))
        except Exception as exc:  # noqa: BLE001 - the shadow never affects the caller
            with self._lock:
                self.failed += 1
            log.warning("shadow: the challenger failed on a batch: %s: %s", type(exc).__name__, exc)
        finally:
            self._slots.release()

    def counts(self) -> dict[str, int]:
        """Batches shadowed / dropped / failed, wafers compared and agreed, so far."""
        with self._lock:
            return {k: getattr(self, k) for k in ("shadowed", "dropped", "failed", "compared", "agreed")}

    def close(self) -> None:
        """Wait for the shadow work in flight (call before reading the report)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "ShadowEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shadow_report(log_rows: pd.DataFrame, labels: dict[tuple[str, str], str] | None = None) -> dict:
    """Champion vs challenger over a window of the prediction log, paired by (lot, wafer).

    ``labels`` maps (lot_id, wafer_id) to the true class for the wafers that have one; the report
    then gives both models' accuracy on that subset.
    """
    key = ["lot_id", "wafer_id"]
    last = log_rows.sort_values("logged_at", kind="stable").drop_duplicates(key + ["alias"], keep="last")
    champ = last[last["alias"] == "champion"].set_index(key)
    chall = last[last["alias"] == "challenger"].set_index(key)
    both = champ.join(chall, how="inner", lsuffix="_champion", rsuffix="_challenger")
    if both.empty:
        raise ValueError("no wafer in the window was predicted by both the champion and the challenger")
    a, b = both["predicted_class_champion"], both["predicted_class_challenger"]
    matrix = pd.crosstab(a, b)

    def side(suffix: str) -> dict:
        lat = both[f"latency_ms{suffix}"].astype(float)
        return {
            "model_version": str(both[f"model_version{suffix}"].iloc[-1]),
            "mean_confidence": round(float(both[f"confidence{suffix}"].mean()), 4),
            "latency_ms_p50": None if lat.isna().all() else round(float(np.nanpercentile(lat, 50)), 3),
            "latency_ms_p95": None if lat.isna().all() else round(float(np.nanpercentile(lat, 95)), 3),
        }

    report = {
        "wafers": int(len(both)),
        "agreement": round(float((a == b).mean()), 4),
        "champion": side("_champion"),
        "challenger": side("_challenger"),
        "disagreements": {f"{x} -> {y}": int(n) for (x, y), n in matrix.stack().items() if x != y and n},
        "confusion": {str(x): {str(y): int(n) for y, n in row.items() if n} for x, row in matrix.iterrows()},
        "labeled": None,
    }
    if labels:
        truth = pd.Series(labels, dtype=object)
        truth.index = pd.MultiIndex.from_tuples(truth.index, names=key)
        have = both.index.intersection(truth.index)
        if len(have):
            t = truth.loc[have]
            report["labeled"] = {
                "wafers": int(len(have)),
                "champion_accuracy": round(float((a.loc[have] == t).mean()), 4),
                "challenger_accuracy": round(float((b.loc[have] == t).mean()), 4),
            }
    return report
