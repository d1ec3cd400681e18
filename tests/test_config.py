import pydantic
import pytest

from tests.conftest import PROJECT_ROOT
from waferflow.config import load_params
from waferflow.synth.generator import GeneratorConfig


def test_project_params_load_into_typed_config():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.preprocess.image_size == (64, 64)
    assert params.synth.generator.diameter_range == (20, 120)
    assert params.synth.generator == GeneratorConfig()  # params.yaml spells out the code defaults
    assert params.validate_.config().max_reject_fraction == 0.05
    assert params.ingest.parser_options().csv.pass_bins == (1,)


def test_a_typo_in_params_fails_with_its_name(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("synth:\n  generator:\n    diameter_rnage: [10, 20]\n")
    with pytest.raises(pydantic.ValidationError, match="diameter_rnage"):
        load_params(path)
    with pytest.raises(FileNotFoundError, match="project root"):
        load_params(tmp_path / "missing.yaml")
