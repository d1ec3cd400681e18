"""``triage`` in ``params.yaml`` (light to import: no torch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["TriageConfig"]


class TriageConfig(BaseModel):
    """The novelty model and the triage thresholds (:mod:`waferflow.triage`).

    Args:
        stages: encoder stages whose pooled features the novelty density models (1 = the
            first, die-level texture; the deepest = what the class head sees).
        set_alpha: class-conditional conformal sets hold a wafer's true class with probability
            >= 1 - set_alpha, for every class; PASS needs a set of exactly the predicted class.
        review_novelty / reject_novelty: novelty p-values below these are REVIEW / REJECT: the
            share of known wafers flagged, by construction.
        probe_wafers: wafers per generated probe set (novel reticle pattern, mixed patterns) the
            stage measures the score on.
    """

    model_config = ConfigDict(extra="forbid")

    stages: tuple[int, ...] = (1, 3, 5)
    set_alpha: float = Field(0.05, gt=0, lt=1)
    review_novelty: float = Field(0.02, gt=0, lt=1)
    reject_novelty: float = Field(0.002, gt=0, lt=1)
    probe_wafers: int = Field(300, ge=20)

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or len(set(v)) != len(v) or min(v) < 1:
            raise ValueError(f"stages must be distinct encoder stages >= 1, got {list(v)}")
        return tuple(sorted(v))
