"""``al`` in ``params.yaml``: the active-learning query."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ALConfig"]


class ALConfig(BaseModel):
    """Args:
    strategy: random | entropy | margin | bald | coreset | hybrid (see ``strategies``).
    budget: wafers per query (what the annotators can label this round).
    mc_samples: MC-dropout passes of the class head for ``bald``.
    prefilter: ``hybrid`` keeps the ``prefilter x budget`` most uncertain, then picks diverse ones.
    novel_first: put the pool's unusual wafers first — those the open-set triage would not pass
        for novelty (p-value below ``triage.review_novelty``), most novel first, up to the
        budget — and fill the rest by ``strategy``. Needs the novelty stage's head.
    batch_size: wafers per scoring batch.
    seed: for ``random`` and the MC-dropout masks.
    labels_dir: where ``waferflow label import`` keeps the labels it accepted (user data,
        read by the split stage; never a pipeline output).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Literal["random", "entropy", "margin", "bald", "coreset", "hybrid"] = "coreset"
    budget: int = Field(100, ge=1)
    mc_samples: int = Field(20, ge=2)
    prefilter: float = Field(5.0, ge=1.0)
    novel_first: bool = False
    batch_size: int = Field(256, ge=1)
    seed: int = 0
    labels_dir: str = "data/labels"
