"""DVC stage `export`: see `waferflow.stages.export`. Run by `dvc repro` from the project root."""

from waferflow.cli import run_stage

if __name__ == "__main__":
    run_stage("export")
