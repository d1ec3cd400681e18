"""The stage table: the one list of waferflow's stages, in pipeline order.

Each stage's code lives in one place, ``pipelines/<name>.py`` at the project root: the file
``dvc.yaml`` runs (``cmd: python pipelines/<name>.py``), so one hop leads from a DVC stage to
its code. A pipeline module defines

* ``run(params, layout) -> dict`` — read its inputs, call the library, write its outputs, return
  what it did (a stage that cannot do its job raises);
* ``result(layout) -> dict`` — that same dict, read back from the file the stage wrote (the
  retrain DAG's summary reads a workspace after ``dvc repro`` ran the stage in another process);
* ``summarise(values) -> list[str]`` — the lines an operator reads, the first one the summary.

The table names each stage once, with its help text, retry policy and place in the pipeline.
The CLI registers a command per entry, the retrain DAG takes its order and retries from it and
the monitor DAG runs its ``drift``, ``index_log`` and ``shadow`` entries (not DVC stages: their
input is live traffic) the same way: ``python pipelines/<name>.py`` in the ML environment.

Example:
    >>> from waferflow.stages import STAGES, stage
    >>> [s.name for s in STAGES if s.dvc][:3], stage("gate").retry.retries
    (['generate', 'ingest', 'validate'], 1)
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import waferflow
from waferflow.layout import Layout

__all__ = ["Retry", "Stage", "StageResult", "STAGES", "stage", "pipelines_dir", "main", "print_result"]


@dataclass(frozen=True)
class Retry:
    """Retries and time limit of a stage's task, and why."""

    retries: int
    timeout: timedelta
    why: str


@dataclass(frozen=True)
class StageResult:
    """What a stage did: its values (as written to its result file) and the lines that say so."""

    stage: str
    values: dict = field(repr=False)
    lines: list[str]

    @property
    def summary(self) -> str:
        return self.lines[0] if self.lines else f"{self.stage}: done"


def pipelines_dir() -> Path:
    """The checkout's ``pipelines/``: beside the imported package's ``src/`` (a source checkout,
    an Airflow run workspace), else in the current directory (an installed package run from a
    project root)."""
    beside = Path(waferflow.__file__).resolve().parents[2] / "pipelines"
    return beside if beside.is_dir() else Path.cwd() / "pipelines"


@dataclass(frozen=True)
class Stage:
    """One row of the table."""

    name: str
    help: str
    retry: Retry
    dvc: bool = True  #: a stage of ``dvc.yaml`` (``dvc repro`` runs it)
    after: str | None = None  #: off the main chain: runs after this stage; its failure holds nothing back

    @property
    def script(self) -> str:
        return f"pipelines/{self.name}.py"

    def module(self) -> ModuleType:
        """``pipelines/<name>.py``, imported once per process as ``waferflow_pipelines.<name>``."""
        key = f"waferflow_pipelines.{self.name}"
        if key not in sys.modules:
            path = pipelines_dir() / f"{self.name}.py"
            if not path.is_file():
                raise FileNotFoundError(f"stage {self.name}: {path} not found; run from a waferflow project root")
            spec = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
        return sys.modules[key]

    def run(self, params, layout: Layout = Layout(), **options) -> StageResult:
        """Run the stage; its values and summary lines."""
        values = self.module().run(params, layout, **options)
        return StageResult(self.name, values, self.summarise(values))

    def result(self, layout: Layout) -> StageResult | None:
        """What the stage wrote last time in ``layout`` (None when it wrote nothing readable)."""
        try:
            values = self.module().result(layout)
        except (OSError, ValueError, KeyError):
            return None
        if values is None:
            return None
        try:
            lines = self.summarise(values)
        except (KeyError, TypeError, ValueError) as exc:  # an old or hand-edited file: say so, do not fail
            lines = [f"{self.name}: its result file cannot be summarised ({type(exc).__name__}: {exc})"]
        return StageResult(self.name, values, lines)

    def summarise(self, values: dict) -> list[str]:
        return list(self.module().summarise(values))


_M = timedelta(minutes=1)
STAGES: tuple[Stage, ...] = (
    Stage(
        "generate",
        "Generate the embedded default data set (labeled, unlabeled and test wafers + gallery).",
        Retry(1, 20 * _M, "deterministic; a retry covers a lost worker"),
    ),
    Stage(
        "ingest",
        "Ingest wafer maps (LSWMD.pkl, .npz, CSV die lists and matrices, SEMI G85/E142 XML, PNG/TIFF, Parquet).",
        Retry(2, 60 * _M, "reads user/network storage, which can hiccup"),
    ),
    Stage(
        "validate",
        "Validate the ingested table with the great-expectations suite; quarantine failing wafers.",
        Retry(0, 30 * _M, "a data-quality failure is a verdict, not a glitch: no retry, the run stops here"),
    ),
    Stage(
        "split",
        "Resize to the model input size and split train/val/test/unlabeled (whole lots, stratified, seeded).",
        Retry(1, 20 * _M, "deterministic"),
    ),
    Stage(
        "augment",
        "GAN augmentation: WGAN-GP maps for classes below augment.min_count, through the quality gate.",
        Retry(1, 120 * _M, "GAN training is seeded; one retry for a lost worker"),
    ),
    Stage(
        "patterns",
        "Boosted trees on the pattern features and the density CNN on fail-density pictures of their "
        "own generated maps (ONNX), blended with the U-Net in the served class -> data/patterns.",
        Retry(1, 60 * _M, "seeded (trees and CNNs); ~15 min on 2 cores; one retry for a lost worker"),
    ),
    Stage(
        "train",
        "Train the U-Net (mask + class heads) with Lightning; log and register it in MLflow with the "
        "pattern trees (the registered pyfunc serves the blended class).",
        Retry(1, 360 * _M, "long; one retry for a lost node or OOM-killed worker"),
    ),
    Stage(
        "evaluate",
        "Evaluate the trained model on the test split (and real data when present); metrics, plots.",
        Retry(1, 30 * _M, "deterministic"),
    ),
    Stage(
        "novelty",
        "Open-set triage: the density of known wafers in the model's features (train split), "
        "PASS/REVIEW/REJECT thresholds calibrated on val -> data/novelty.",
        Retry(1, 30 * _M, "deterministic"),
    ),
    Stage(
        "al_query",
        "Active learning: pick the unlabeled wafers worth labeling (al.strategy, al.budget) -> data/al/queue.",
        Retry(1, 30 * _M, "deterministic; publishes the queue's size and place"),
        after="novelty",
    ),
    Stage(
        "index",
        "Similar-wafer index: every labeled wafer embedded by the trained model -> data/index.",
        Retry(1, 30 * _M, "deterministic"),
        after="evaluate",
    ),
    Stage(
        "export",
        "Export the trained model to ONNX, check parity with PyTorch, log it beside the model version.",
        Retry(1, 30 * _M, "a parity failure fails again: see the task log"),
    ),
    Stage(
        "gate",
        "Promotion gate: the challenger becomes champion only if every rule in params.yaml passes.",
        Retry(1, 30 * _M, "registry writes are idempotent; alias moves are compare-and-set"),
    ),
    Stage(
        "drift",
        "Drift check of the prediction log's last window against the reference (evidently).",
        Retry(1, 30 * _M, "reads the log and the registry; a retry covers a lost worker"),
        dvc=False,
    ),
    Stage(
        "index_log",
        "Similar-wafer index of production: the prediction log's wafers embedded by the trained model "
        "-> data/index_log (beside data/index).",
        Retry(1, 30 * _M, "reads the log; a retry covers a lost worker"),
        dvc=False,
    ),
    Stage(
        "shadow",
        "Champion vs challenger on live traffic from the prediction log; the gate again when it "
        "needs the shadow report.",
        Retry(1, 30 * _M, "alias moves are compare-and-set"),
        dvc=False,
    ),
)
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The table's entry for ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(_BY_NAME)}") from None


def print_result(name: str, root: Path = Path(".")) -> None:
    """Print what stage ``name`` wrote last in ``root`` as one JSON line (a DAG task's XCom)."""
    result = stage(name).result(Layout(root))
    if result is None:
        print(f"stage {name}: no readable result in {root}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(json.dumps(result.values, default=str), flush=True)


def main(name: str, argv: list[str] | None = None) -> None:
    """Entry point of ``pipelines/<name>.py``: run the stage with ``params.yaml`` in the current
    directory, print its summary lines; ``--json`` adds the values as the last line (the
    Airflow task's XCom). A stage that fails prints why and exits 1."""
    from waferflow.config import load_params
    from waferflow.data.validation import ValidationFailed

    argv = sys.argv[1:] if argv is None else argv
    try:
        result = stage(name).run(load_params("params.yaml"), Layout())
    except (ValidationFailed, FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"stage {name} failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    for line in result.lines:
        print(line, flush=True)
    if "--json" in argv:
        print(json.dumps(result.values, default=str), flush=True)


if __name__ == "__main__":  # python -m waferflow.stages <stage> [--json | --result]
    if len(sys.argv) < 2 or sys.argv[1] not in _BY_NAME or not set(sys.argv[2:]) <= {"--json", "--result"}:
        sys.exit(
            f"usage: python -m waferflow.stages <stage> [--json | --result]; stages: {', '.join(_BY_NAME)}\n"
            "  run the stage in the current directory (--json: its values as the last line), or\n"
            "  --result: print what it wrote last, as one JSON line"
        )
    if "--result" in sys.argv:
        print_result(sys.argv[1])
    else:
        main(sys.argv[1], sys.argv[2:])
