"""One typed configuration, loaded from ``params.yaml`` and passed down to every stage.

Example:
    >>> from waferflow.config import load_params
    >>> params = load_params("params.yaml")  # doctest: +SKIP
    >>> params.preprocess.image_size  # doctest: +SKIP
    (64, 64)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from waferflow.active.config import ALConfig
from waferflow.monitoring.config import DriftConfig
from waferflow.data.parsers import CsvOptions, ImageOptions, NpzOptions, ParserOptions, SemiXmlOptions, StdfOptions
from waferflow.data.split import SplitConfig
from waferflow.data.validation import ValidationConfig
from waferflow.gan.config import GanAugmentConfig
from waferflow.models.config import ModelConfig
from waferflow.patterns.config import PatternsConfig
from waferflow.registry.gate_config import GateConfig
from waferflow.registry.tracking import MlflowConfig
from waferflow.synth.dataset import DatasetConfig
from waferflow.training.config import TrainConfig
from waferflow.triage.config import TriageConfig

__all__ = ["Params", "load_params"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CsvParams(_Section):
    delimiter: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    pass_bins: list[int] = Field(default_factory=lambda: [1])
    fail_bins: list[int] = Field(default_factory=list)
    flip_y: bool = False
    null_bins: list[int] = Field(default_factory=lambda: [0])
    layout: Literal["auto", "die_list", "matrix"] = "auto"


class NpzParams(_Section):
    maps_keys: list[str] = Field(default_factory=lambda: list(NpzOptions().maps_keys))
    labels_keys: list[str] = Field(default_factory=lambda: list(NpzOptions().labels_keys))
    label_names: list[str] = Field(default_factory=lambda: list(NpzOptions().label_names))


class ImageParams(_Section):
    grey_levels: tuple[int, int, int] = (0, 128, 255)
    palette: list[tuple[int, int, int]] = Field(default_factory=lambda: list(ImageOptions().palette))
    tolerance: float = 40.0


class SemiXmlParams(_Section):
    pass_bins: list[str] = Field(default_factory=list)
    undeclared_bins: Literal["reject", "fail"] = "reject"


class StdfParams(_Section):
    pass_bins: list[int] = Field(default_factory=list)
    bin: Literal["hard", "soft"] = "hard"
    undeclared_bins: Literal["reject", "fail"] = "reject"


class IngestParams(_Section):
    sources: list[str] = Field(default_factory=lambda: ["data/generated", "data/raw"])
    csv: CsvParams = Field(default_factory=CsvParams)
    npz: NpzParams = Field(default_factory=NpzParams)
    image: ImageParams = Field(default_factory=ImageParams)
    semi_xml: SemiXmlParams = Field(default_factory=SemiXmlParams)
    stdf: StdfParams = Field(default_factory=StdfParams)

    def parser_options(self) -> ParserOptions:
        c = self.csv
        return ParserOptions(
            csv=CsvOptions(
                delimiter=c.delimiter,
                columns=dict(c.columns),
                pass_bins=tuple(c.pass_bins),
                fail_bins=tuple(c.fail_bins),
                flip_y=c.flip_y,
                null_bins=tuple(c.null_bins),
                layout=c.layout,
            ),
            npz=NpzOptions(
                maps_keys=tuple(self.npz.maps_keys),
                labels_keys=tuple(self.npz.labels_keys),
                label_names=tuple(self.npz.label_names),
            ),
            image=ImageOptions(
                grey_levels=self.image.grey_levels,
                palette=tuple(map(tuple, self.image.palette)),
                tolerance=self.image.tolerance,
            ),
            semi_xml=SemiXmlOptions(
                pass_bins=tuple(self.semi_xml.pass_bins), undeclared_bins=self.semi_xml.undeclared_bins
            ),
            stdf=StdfOptions(
                pass_bins=tuple(self.stdf.pass_bins), bin=self.stdf.bin, undeclared_bins=self.stdf.undeclared_bins
            ),
        )


class ValidateParams(_Section):
    min_side: int = 3
    max_side: int = 1024
    max_reject_fraction: float = 0.05

    def config(self) -> ValidationConfig:
        return ValidationConfig(**self.model_dump())


class PreprocessParams(_Section):
    image_size: tuple[int, int] = (64, 64)


class SplitParams(_Section):
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    honour_source_split: bool = True


class StorageParams(_Section):
    """Team storage: an S3 URL for the DVC remote (``WAFERFLOW_DVC_S3_URL`` overrides it)."""

    dvc_s3_url: str = ""
    s3_endpoint_url: str = ""


class EvaluateParams(_Section):
    real_data_dir: str = "../shared/data"  # real labeled maps, evaluated apart when present
    worst_errors: int = 12


class ExportParams(_Section):
    tolerance: float = 1e-4  # max |logit difference| ONNX vs PyTorch on the test split
    max_int8_f1_drop: float = 0.005  # INT8 model kept only if macro-F1 drops by at most this
    calibration_size: int = 256  # validation wafers used to calibrate INT8 activations


class ServeParams(_Section):
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: str = "WAFERFLOW_API_KEYS"
    api_key_file: str = ""
    poll_seconds: float = 5.0
    max_wafers: int = 512
    max_request_mb: float = 32.0
    shadow_max_pending: int = 8
    log_flush_seconds: float = Field(2.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)


class IndexParams(_Section):
    """The similar-wafer index (stages ``index`` and ``index_log``)."""

    log_days: int = Field(30, ge=1)  # index_log: production wafers of the prediction log's last N days


class Params(_Section):
    synth: DatasetConfig = Field(default_factory=DatasetConfig)
    ingest: IngestParams = Field(default_factory=IngestParams)
    validate_: ValidateParams = Field(default_factory=ValidateParams, alias="validate")
    preprocess: PreprocessParams = Field(default_factory=PreprocessParams)
    split: SplitParams = Field(default_factory=SplitParams)
    storage: StorageParams = Field(default_factory=StorageParams)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    export: ExportParams = Field(default_factory=ExportParams)
    gate: GateConfig = Field(default_factory=GateConfig)
    augment: GanAugmentConfig = Field(default_factory=GanAugmentConfig)
    al: ALConfig = Field(default_factory=ALConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    serve: ServeParams = Field(default_factory=ServeParams)
    triage: TriageConfig = Field(default_factory=TriageConfig)
    patterns: PatternsConfig = Field(default_factory=PatternsConfig)
    index: IndexParams = Field(default_factory=IndexParams)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    def split_config(self) -> SplitConfig:
        return SplitConfig(image_size=self.preprocess.image_size, **self.split.model_dump())


def raw_params(path: str | Path = "params.yaml") -> dict:
    """``params.yaml`` as a plain nested dict (for logging every parameter to MLflow)."""
    return yaml.safe_load(Path(path).read_text()) or {}


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and check ``params.yaml``; a typo'd key fails here with its name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the project root or pass --params")
    return Params.model_validate(raw_params(path))
