"""What the service answers with, and the hot swap that follows the registry's aliases.

:class:`ServedModels` holds one immutable :class:`Served` snapshot: the champion's engine, and a
:class:`~waferflow.monitoring.shadow.ShadowEngine` around it when the registry has a challenger.
``refresh`` reads the aliases; when ``champion`` or ``challenger`` points at another version than
the one served, the new engines are loaded and probed *beside* the old ones, then the snapshot is
replaced in one assignment. A request takes the snapshot once and finishes with it, so a swap
never fails or drops a request; the retired shadow is closed after its work in flight. A load or
probe that fails keeps the old snapshot serving and is reported (``last_error``, ``/v1/models``).
A background thread calls ``refresh`` every ``poll_seconds``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from waferflow.monitoring.shadow import ShadowEngine

__all__ = ["Served", "ServedModels", "probe_grid"]

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
SHADOW_COUNTS = ("shadowed", "dropped", "failed", "compared", "agreed")


def probe_grid(side: int = 32) -> np.ndarray:
    """A small wafer (a disc of passing dies with a few fails) every loaded model must classify."""
    yy, xx = np.mgrid[:side, :side]
    grid = np.where((yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 <= (side / 2) ** 2, 1, 0).astype(np.uint8)
    grid[side // 2, side // 4 : side // 2] = 2
    return grid


@dataclass(frozen=True)
class Served:
    """One consistent pair: the engine that answers and, when there is a challenger, its shadow."""

    champion: object
    champion_version: str
    challenger_version: str | None = None
    shadow: ShadowEngine | None = None
    loaded_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def predict(self, wafers, **kwargs) -> list[dict]:
        return (self.shadow or self.champion).predict(wafers, **kwargs)


class ServedModels:
    """The served snapshot and its refresh from the registry.

    Args:
        model_name: The registered model.
        load: ``load(version, alias) -> engine``; the service passes
            :meth:`InferenceEngine.from_registry` with the prediction log.
        aliases: ``aliases() -> {alias: version}`` of the registered model (the registry's).
        shadow_max_pending: :class:`ShadowEngine`'s ``max_pending``.
        on_stop: called by :meth:`stop` once the engines are done (the service's prediction log
            writes what it still holds).
    """

    def __init__(
        self,
        model_name: str,
        load: Callable[[str, str], object],
        aliases: Callable[[], dict[str, str]],
        shadow_max_pending: int = 8,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.model_name, self.load_engine, self._aliases = model_name, load, aliases
        self._on_stop = on_stop
        self.shadow_max_pending = shadow_max_pending
        self.current: Served | None = None
        self.last_error: str | None = None
        self.last_refresh: str | None = None
        self.swaps = 0
        self._retired = dict.fromkeys(SHADOW_COUNTS, 0)  # counts of shadows swapped out: totals never go back
        self._retiring: list[ShadowEngine] = []  # swapped out, finishing their work in flight
        self._counts_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _probed(self, version: str, alias: str):
        engine = self.load_engine(version, alias)
        log_to, engine.prediction_log = getattr(engine, "prediction_log", None), None  # a probe is not traffic
        try:
            result = engine.predict(probe_grid())
        finally:
            engine.prediction_log = log_to
        if not result or result[0].get("class") is None:
            raise RuntimeError(f"version {version}: the probe prediction returned nothing")
        return engine

    def refresh(self) -> bool:
        """Serve what the aliases name now; True when the snapshot changed."""
        with self._refresh_lock:
            self.last_refresh = datetime.now(timezone.utc).isoformat(timespec="seconds")
            try:
                names = {k: str(v) for k, v in self._aliases().items()}
            except Exception as exc:  # noqa: BLE001 - the registry unreachable: keep serving what we have
                self.last_error = f"cannot read the aliases of {self.model_name}: {type(exc).__name__}: {exc}"
                log.warning("serve: %s", self.last_error)
                return False
            champion, challenger = names.get(CHAMPION), names.get(CHALLENGER)
            if challenger == champion:
                challenger = None
            old = self.current
            if champion is None:
                self.last_error = f"{self.model_name} has no '{CHAMPION}' alias: nothing to serve"
                return False
            if old and (old.champion_version, old.challenger_version) == (champion, challenger):
                return False
            try:
                main = old.champion if old and old.champion_version == champion else self._probed(champion, CHAMPION)
                shadow = None
                if challenger is not None:
                    reuse = old and old.challenger_version == challenger and old.shadow is not None
                    second = old.shadow.challenger if reuse else self._probed(challenger, CHALLENGER)
                    shadow = ShadowEngine(main, second, max_pending=self.shadow_max_pending)
            except Exception as exc:  # noqa: BLE001 - a broken version must not take the service down
                self.last_error = f"cannot load champion {champion} / challenger {challenger}: {exc}"
                log.warning("serve: %s; still serving %s", self.last_error, old and old.champion_version)
                return False
            self.current = Served(main, champion, challenger, shadow)
            self.last_error = None
            self.swaps += old is not None
            log.info("serve: champion %s, challenger %s (was %s)", champion, challenger, old and old.champion_version)
            if old is not None and old.shadow is not None:
                with self._counts_lock:
                    self._retiring.append(old.shadow)
                threading.Thread(target=self._retire, args=(old.shadow,), daemon=True).start()
            return True

    def _retire(self, shadow: ShadowEngine) -> None:
        shadow.close()  # waits for the challenger's work in flight
        with self._counts_lock:
            for k, n in shadow.counts().items():
                self._retired[k] += n
            self._retiring.remove(shadow)

    def shadow_counts(self) -> dict[str, int]:
        """Totals since start (retired shadows, those finishing, the one serving): they never go back."""
        served = self.current
        with self._counts_lock:
            live = [s.counts() for s in self._retiring]
            if served is not None and served.shadow is not None and served.shadow not in self._retiring:
                live.append(served.shadow.counts())
            return {k: self._retired[k] + sum(c[k] for c in live) for k in SHADOW_COUNTS}

    def start(self, poll_seconds: float) -> None:
        """Refresh every ``poll_seconds`` in a daemon thread (after a first refresh in the caller's)."""
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(poll_seconds):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="waferflow-serve-aliases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.current is not None and self.current.shadow is not None:
            self.current.shadow.close()
        if self._on_stop is not None:
            self._on_stop()
