"""The stages of the pipeline, as called by ``pipelines/*.py`` (DVC) and the CLI.

Each function takes the typed :class:`~waferflow.config.Params` and the stage's paths (the
defaults are the layout ``dvc.yaml`` declares), does its work through the library, writes its
outputs and returns a small summary dict. A stage that cannot do its job raises.

One module per stage (group) so that each DVC stage depends on its own code in ``dvc.yaml``.
"""

from waferflow.stages.active import al_query
from waferflow.stages.augmentation import augment
from waferflow.stages.data_stages import generate, ingest_stage, split, validate
from waferflow.stages.evaluation import evaluate
from waferflow.stages.layout import Layout
from waferflow.stages.promotion import gate
from waferflow.stages.serving import export
from waferflow.stages.training import train

__all__ = ["Layout", "generate", "ingest_stage", "validate", "split", "train", "evaluate", "export", "gate", "al_query", "augment"]
