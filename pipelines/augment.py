"""DVC stage `augment`: see `waferflow.stages.augment`. Run by `dvc repro` from the project root."""

from waferflow.cli import run_stage

if __name__ == "__main__":
    run_stage("augment")
