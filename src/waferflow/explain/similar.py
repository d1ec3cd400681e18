"""Similar past wafers: nearest neighbours in the class head's embedding.

Each wafer is embedded as the class head sees it — the last encoder stage, average-pooled
(:func:`waferflow.models.scoring.score_pool`), L2-normalised — and the index answers the ``k``
nearest labeled wafers by cosine distance (scikit-learn's exact search: a few thousand to a few
hundred thousand wafers of a few hundred dimensions need no approximate index), with their lot,
wafer, label and distance. WM-811K's own paper pairs recognition with this similarity ranking:
an engineer told "Scratch, 0.71" checks it against the past wafers that looked the same.

Example:
    >>> import numpy as np, pandas as pd
    >>> emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> index = WaferIndex(emb, pd.DataFrame({"lot_id": ["A", "A", "B"], "wafer_id": ["1", "2", "1"],
    ...                                       "label": ["Scratch", "Scratch", "Donut"]}))
    >>> [n["label"] for n in index.neighbours(np.array([[1.0, 0.05]]), k=2)[0]]
    ['Scratch', 'Scratch']
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from waferflow.fileio import atomic_path

__all__ = ["WaferIndex", "embed", "precision_at_k", "INDEX_FILES"]

INDEX_FILES = ("embeddings.npy", "wafers.parquet", "index.json")


def embed(predictor, grids: np.ndarray, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """L2-normalised class-head embeddings ``(N, D)`` of grids already at the model's input size."""
    from waferflow.models.scoring import score_pool

    emb = score_pool(predictor, grids, batch_size=batch_size, progress=progress, desc="embedding").emb
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


class WaferIndex:
    """Embeddings of known wafers and who they are (``lot_id``, ``wafer_id``, ``label`` …)."""

    def __init__(self, embeddings: np.ndarray, wafers: pd.DataFrame, info: dict | None = None) -> None:
        if len(embeddings) != len(wafers):
            raise ValueError(f"{len(embeddings)} embeddings for {len(wafers)} wafers")
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)
        self.wafers = wafers.reset_index(drop=True)
        self.info = info or {}
        self._search = NearestNeighbors(metric="cosine").fit(self.embeddings) if len(wafers) else None

    def __len__(self) -> int:
        return len(self.wafers)

    def neighbours(self, query: np.ndarray, k: int = 10, exclude_lots: list[str] | None = None) -> list[list[dict]]:
        """Per query embedding, its ``k`` nearest wafers (closest first) with their columns and the
        cosine ``distance``; ``exclude_lots[i]`` leaves query i's own lot out (a wafer's lot mates
        are not "past" wafers to it)."""
        if self._search is None:
            raise ValueError("the index is empty")
        extra = 0 if exclude_lots is None else int(self.wafers["lot_id"].value_counts().max())
        n = min(len(self), k + extra)
        distances, rows = self._search.kneighbors(np.asarray(query, dtype=np.float32), n_neighbors=n)
        lots = self.wafers["lot_id"].to_numpy()
        answers = []
        for i, (dist, idx) in enumerate(zip(distances, rows)):
            keep = [j for j in range(n) if exclude_lots is None or lots[idx[j]] != exclude_lots[i]][:k]
            answers.append([{**self.wafers.iloc[idx[j]].to_dict(), "distance": round(float(dist[j]), 6)} for j in keep])
        return answers

    def past_wafers(self, query: np.ndarray, ids: list[tuple[str, str]], k: int = 10) -> list[list[dict]]:
        """:meth:`neighbours` of wafers ``ids`` (lot, wafer): one already in the index is not its
        own past wafer."""
        nearest = self.neighbours(query, k=k + 1)
        return [[n for n in near if (n["lot_id"], n["wafer_id"]) != tuple(i)][:k] for i, near in zip(ids, nearest)]

    def past_wafers_of(self, predictor, records, input_size: tuple[int, int], k: int = 10) -> list[list[dict]]:
        """:meth:`past_wafers` of wafer records (any grid size), embedded by ``predictor`` at
        ``input_size`` — the model that built the index."""
        from waferflow.data.resize import resize_grid

        query = embed(predictor, np.stack([resize_grid(r.die_grid, input_size) for r in records]))
        return self.past_wafers(query, [(r.lot_id, r.wafer_id) for r in records], k=k)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "embeddings.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.embeddings)
        with atomic_path(folder / "wafers.parquet") as tmp:
            self.wafers.to_parquet(tmp, index=False)
        with atomic_path(folder / "index.json") as tmp:
            tmp.write_text(json.dumps({**self.info, "wafers": len(self), "dim": int(self.embeddings.shape[1])}))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "WaferIndex":
        folder = Path(folder)
        missing = [f for f in INDEX_FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder} is not a wafer index (missing {', '.join(missing)}): run `dvc repro index`"
            )
        return cls(
            np.load(folder / "embeddings.npy", allow_pickle=False),
            pd.read_parquet(folder / "wafers.parquet"),
            json.loads((folder / "index.json").read_text()),
        )


def precision_at_k(index: WaferIndex, query: np.ndarray, labels, k: int = 10, lots=None) -> float:
    """Mean share of each query's ``k`` nearest wafers that carry its true label (``lots``: leave
    each query's own lot out)."""
    found = index.neighbours(query, k, exclude_lots=None if lots is None else list(lots))
    return float(np.mean([np.mean([n["label"] == lab for n in near]) for near, lab in zip(found, labels)]))
