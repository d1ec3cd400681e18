"""DVC stage `al_query`: see `waferflow.stages.al_query`. Run by `dvc repro` from the project root."""

from waferflow.cli import run_stage

if __name__ == "__main__":
    run_stage("al_query")
