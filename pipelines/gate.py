"""DVC stage `gate`: see `waferflow.stages.gate`. Run by `dvc repro` from the project root."""

from waferflow.cli import run_stage

if __name__ == "__main__":
    run_stage("gate")
