"""Rules of the promotion gate (``gate`` in ``params.yaml``); light to import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GateConfig"]


class GateConfig(BaseModel):
    """``gate`` in ``params.yaml``.

    Shadow rules (from ``shadow_report``, written by ``waferflow shadow`` / the monitor DAG): they
    apply when the report pairs *this* challenger with *this* champion over at least
    ``min_shadow_wafers`` wafers — agreement >= ``min_shadow_agreement``, and, when some of those
    wafers are labeled, challenger accuracy >= champion accuracy - ``max_shadow_accuracy_drop``.
    With ``require_shadow`` a challenger without such a report is refused (it keeps its
    ``challenger`` alias; the monitor DAG judges it again once the shadow has seen enough wafers).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_macro_f1_drop: float = 0.005
    max_class_recall_drop: float = 0.03
    require_onnx_parity: bool = True
    max_latency_ratio: float = 1.2
    latency_runs: int = 200
    force_promote: bool = False
    shadow_report: str = "metrics/shadow.json"
    require_shadow: bool = False
    min_shadow_wafers: int = Field(200, ge=1)
    min_shadow_agreement: float = Field(0.9, ge=0, le=1)
    max_shadow_accuracy_drop: float = Field(0.0, ge=0)
