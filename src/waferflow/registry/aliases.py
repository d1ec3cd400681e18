"""Moving registry aliases one writer at a time, and only from the state a decision was made on.

The gate (retrain DAG, ``dvc repro``), the monitor DAG's shadow step, and ``waferflow promote`` /
``rollback`` all move ``champion``. Each move happens inside :func:`alias_lock`, a file lock keyed
by the registry's URI, beside a local SQLite store (else in the temp folder: one machine). Inside
it, :func:`move_champion` re-reads the aliases and refuses with :class:`AliasMoved` when
``champion`` is no longer the version the caller compared against (compare-and-set). A gate that
measured against v3 while another process promoted v4 then changes nothing and says why.

Example:
    >>> with alias_lock():  # doctest: +SKIP
    ...     move_champion(MlflowClient(), "waferflow-wafer-classifier", "7", expected="5")
"""

from __future__ import annotations

import hashlib
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
from filelock import FileLock
from mlflow import MlflowClient

from waferflow.registry.register import CHALLENGER, CHAMPION

__all__ = ["PREVIOUS", "AliasMoved", "alias_lock", "move_champion", "lock_path", "aliases_of"]

PREVIOUS = "previous"


class AliasMoved(RuntimeError):
    """``champion`` moved after the caller read it: its decision is about a stale pair."""


def aliases_of(name: str) -> dict[str, str]:
    """The registered model's aliases now, alias -> version (empty when it is not registered yet)."""
    try:
        return {k: str(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}
    except Exception:  # noqa: BLE001 - MLflow raises its own type for an unknown model
        return {}


def lock_path(registry_uri: str | None = None) -> Path:
    """The lock file every alias writer of this registry takes."""
    uri = registry_uri or mlflow.get_registry_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).with_suffix(".aliases.lock")
    return Path(tempfile.gettempdir()) / f"waferflow-aliases-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.lock"


@contextmanager
def alias_lock(timeout: float = 600.0) -> Iterator[None]:
    """Hold the registry's alias lock (waits up to ``timeout`` seconds for another writer)."""
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path), timeout=timeout):
        yield


def move_champion(client: MlflowClient, name: str, version: str, expected: str | None) -> str | None:
    """``champion`` -> ``version`` (the old one becomes ``previous``; ``challenger`` is cleared
    when it pointed at ``version``), if ``champion`` is still ``expected``. Call inside
    :func:`alias_lock`. Returns the old champion."""
    aliases = client.get_registered_model(name).aliases
    old = aliases.get(CHAMPION)
    if (None if old is None else str(old)) != (None if expected is None else str(expected)):
        raise AliasMoved(
            f"{name}: champion is version {old} now, not version {expected} as when this decision was "
            f"made; nothing moved (run the gate again for the new pair)"
        )
    client.set_registered_model_alias(name, CHAMPION, version)
    if old is not None and str(old) != str(version):
        client.set_registered_model_alias(name, PREVIOUS, str(old))
    if str(aliases.get(CHALLENGER)) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return None if old is None else str(old)
