"""Similar past wafers: nearest neighbours in the class head's embedding.

Each wafer is embedded as the class head sees it — the last encoder stage, average-pooled
(:func:`waferflow.models.scoring.score_pool`), L2-normalised — and the index answers the ``k``
nearest labeled wafers by cosine distance (scikit-learn's exact search: a few thousand to a few
hundred thousand wafers of a few hundred dimensions need no approximate index), with their lot,
wafer, label and distance. WM-811K's own paper pairs recognition with this similarity ranking:
an engineer told "Scratch, 0.71" checks it against the past wafers that looked the same.

Two indexes answer together (:func:`past_index`): ``data/index`` — the labeled wafers of the
train, val and test splits (DVC stage ``index``) — and ``data/index_log`` — the production wafers
of the prediction log (stage ``index_log``, run daily by the monitor DAG: live traffic is no DVC
input), split ``log``, labeled where an engineer labeled them since (``waferflow label import``),
else ``label`` None with the class the model gave (``predicted_class``). The log index keeps the
grids it embedded (``grids.npy``) for the galleries.

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

__all__ = ["WaferIndex", "embed", "precision_at_k", "past_index", "neighbour_grids", "INDEX_FILES", "LOG_SPLIT"]

INDEX_FILES = ("embeddings.npy", "wafers.parquet", "index.json")
LABELED_INDEX, LOG_INDEX = "data/index", "data/index_log"
LOG_SPLIT = "log"  #: the split name of production wafers from the prediction log


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
            answers.append([{**_plain(self.wafers.iloc[idx[j]]), "distance": round(float(dist[j]), 6)} for j in keep])
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

    def concat(self, other: "WaferIndex") -> "WaferIndex":
        """This index followed by ``other``'s wafers (same embedding: the same model version);
        ``info`` is this one's, its ``splits`` extended by ``other``'s."""
        splits = list(self.info.get("splits", [])) + [
            s for s in other.info.get("splits", []) if s not in self.info.get("splits", [])
        ]
        return WaferIndex(
            np.concatenate([self.embeddings, other.embeddings.reshape(-1, self.embeddings.shape[1])]),
            pd.concat([self.wafers, other.wafers], ignore_index=True),
            {**self.info, "splits": splits},
        )

    def save(self, folder: str | Path, grids: np.ndarray | None = None) -> Path:
        """Write the index (atomically, file by file); ``grids``: the wafers' input grids, kept
        beside it as ``grids.npy`` when they live nowhere else (the log index)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if grids is not None:
            with atomic_path(folder / "grids.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(grids, dtype=np.uint8))
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


def _plain(row: pd.Series) -> dict:
    """A wafer's columns for JSON: a column the other index has and this one lacks (a labeled
    wafer has no ``predicted_class``) is None, not NaN."""
    return {k: None if np.isscalar(v) and pd.isna(v) else v for k, v in row.to_dict().items()}


def past_index(root: str | Path) -> tuple[WaferIndex, str]:
    """The labeled index of ``root`` with the log index appended when the same model version
    built it; and a line saying which were used (why the log's were not)."""
    root = Path(root)
    index = WaferIndex.load(root / LABELED_INDEX)
    if not (root / LOG_INDEX / "index.json").is_file():
        return index, f"{len(index)} labeled wafers (no production wafers indexed: run `waferflow index_log`)"
    logged = WaferIndex.load(root / LOG_INDEX)
    if str(logged.info.get("model_version")) != str(index.info.get("model_version")):
        return index, (
            f"{len(index)} labeled wafers (the production wafers' index is of model version "
            f"{logged.info.get('model_version')}, not {index.info.get('model_version')}: run `waferflow index_log`)"
        )
    return index.concat(logged), f"{len(index)} labeled + {len(logged)} production wafers"


def neighbour_grids(root: str | Path, index: WaferIndex) -> dict[str, np.ndarray]:
    """Per split of ``index``, the input-size grids its ``row`` column points into."""
    from waferflow.data.arrays import WaferArrays
    from waferflow.layout import Layout

    layout = Layout(Path(root))
    return {
        split: np.load(layout.root / LOG_INDEX / "grids.npy", allow_pickle=False)
        if split == LOG_SPLIT
        else WaferArrays.from_parquet(layout.processed / f"{split}.parquet").grids
        for split in index.info.get("splits", [])
    }


def precision_at_k(index: WaferIndex, query: np.ndarray, labels, k: int = 10, lots=None) -> float:
    """Mean share of each query's ``k`` nearest wafers that carry its true label (``lots``: leave
    each query's own lot out)."""
    found = index.neighbours(query, k, exclude_lots=None if lots is None else list(lots))
    return float(np.mean([np.mean([n["label"] == lab for n in near]) for near, lab in zip(found, labels)]))
