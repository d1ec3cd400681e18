"""Rules of the promotion gate (``gate`` in ``params.yaml``); light to import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["GateConfig"]


class GateConfig(BaseModel):
    """``gate`` in ``params.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_macro_f1_drop: float = 0.005
    max_class_recall_drop: float = 0.03
    require_onnx_parity: bool = True
    max_latency_ratio: float = 1.2
    latency_runs: int = 200
    force_promote: bool = False
