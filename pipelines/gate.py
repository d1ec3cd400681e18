"""Stage gate: the challenger becomes champion in the MLflow registry only when every rule in
``params.yaml → gate`` passes (test split, real dev lots when present, the shadow report when it
is about this pair, ONNX parity, latency). Alias moves are compare-and-set under the registry's
alias lock, shared with ``waferflow promote/rollback`` and the monitor's shadow step.

DVC runs ``python pipelines/gate.py``. Output: ``metrics/gate.json`` (every rule, both sides,
the decision and the aliases after it).
"""

from __future__ import annotations

import json

from waferflow.config import Params
from waferflow.fileio import write_json
from waferflow.layout import Layout


def judge(params: Params, layout: Layout, version: str) -> dict:
    """Run the promotion gate on ``version``: the frozen test split, real data when present, and the
    latest shadow report (``gate.shadow_report``; its rules apply when it is about this pair)."""
    from waferflow.data.arrays import WaferArrays
    from waferflow.evaluation.evaluate import load_real_arrays
    from waferflow.registry.gate import run_gate
    from waferflow.registry.tracking import configure_mlflow

    configure_mlflow(params.mlflow, layout.root)
    shadow_path = layout.resolve(params.gate.shadow_report)
    shadow = json.loads(shadow_path.read_text()) if shadow_path.is_file() else None
    # The gate chooses between versions, so it looks at the real dev lots only: the test lots stay for reporting.
    real, _ = load_real_arrays(layout.resolve(params.evaluate.real_data_dir), params.preprocess.image_size, part="dev")
    return run_gate(
        params.mlflow.registered_model,
        str(version),
        WaferArrays.from_parquet(layout.processed / "test.parquet"),
        params.gate,
        real,
        shadow,
    )


def run(params: Params, layout: Layout) -> dict:
    """The gate on the version the train stage registered."""
    result = judge(params, layout, layout.train_run()["version"])
    write_json(layout.metrics / "gate.json", result)
    return result


def result(layout: Layout) -> dict:
    return json.loads((layout.metrics / "gate.json").read_text())


def summarise(g: dict) -> list[str]:
    before = g.get("champion_version")
    return [
        f"gate: version {g['challenger_version']} {g['decision']}: {g['reason']}",
        f"champion before: {'v' + str(before) if before not in (None, g['challenger_version']) else 'none'}",
        *(
            f"  {'PASS' if r['passed'] else 'FAIL'} {r['rule']}: challenger {r['challenger']} vs champion "
            f"{r['champion']} ({r['limit']})"
            for r in g["rules"]
        ),
        f"aliases: {g['aliases']}",
    ]


if __name__ == "__main__":
    from waferflow.stages import main

    main("gate")
