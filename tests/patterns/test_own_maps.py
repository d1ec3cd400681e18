"""patterns.own_maps: the trees fit on generated maps of their own plus a fab's labeled wafers of
the training split, never on the split's generated wafers."""

import json
import shutil

import pandas as pd
import pytest

from waferflow.config import load_params
from waferflow.layout import Layout
from waferflow.patterns.config import OwnMapsConfig
from waferflow.patterns.own_maps import GENERATED_SOURCE, own_dataset_config
from waferflow.patterns.trees import PatternClassifier
from waferflow.stages import stage
from waferflow.synth import DatasetConfig


def test_the_own_maps_take_the_synth_settings_with_their_overrides():
    synth = DatasetConfig(n_products=50, wafers_per_lot=7)
    cfg = own_dataset_config(synth, OwnMapsConfig(per_class=4, seed=9, generator={"scratch_reach": 1.0}))
    assert (cfg.seed, cfg.labeled_per_class, cfg.unlabeled_count, cfg.test_per_class) == (9, 4, 0, 0)
    assert (cfg.n_products, cfg.wafers_per_lot) == (50, 7) and cfg.generator.scratch_reach == 1.0
    assert cfg.generator.diameter_range == synth.generator.diameter_range
    with pytest.raises(ValueError, match="scratch_lenght"):  # a typo is named, not ignored
        own_dataset_config(synth, OwnMapsConfig(generator={"scratch_lenght": (0.3, 1.0)}))


def test_patterns_stage_fits_on_its_own_maps_and_the_fabs_wafers(tiny_project, tmp_path):
    root = tmp_path / "own"
    shutil.copytree(tiny_project / "data/processed", root / "data/processed")
    (root / "metrics").mkdir()
    train_file = root / "data/processed/train.parquet"
    train = pd.read_parquet(train_file)
    fab = train.index[train["label"].notna()][:30]  # these 30 labeled wafers now come from a fab's files
    train.loc[fab, "source"] = "csv"
    train.to_parquet(train_file)
    params = load_params(tiny_project / "params.yaml")
    own = OwnMapsConfig(per_class=12, seed=3, generator={"diameter_range": (18, 40)})
    params = params.model_copy(update={"patterns": params.patterns.model_copy(update={"own_maps": own})})

    summary = stage("patterns").run(params, Layout(root), progress=False).values

    assert summary["fitted_on_parts"] == {"training_split": 30, "own_generated": 12 * 9}
    assert summary["fitted_on"] == 30 + 12 * 9 and summary["parity"]["passed"]
    assert summary["generated_val"]["macro_f1"] > 1 / 3  # chance is 1/9: trees of 108 maps learned
    meta = json.loads((root / "data/patterns/patterns.json").read_text())
    assert meta["params"]["own_maps"]["generator"] == {"diameter_range": [18, 40]}
    assert PatternClassifier.from_dir(root / "data/patterns") is not None
    assert (train["source"] == GENERATED_SOURCE).sum() > 30  # the rest were left out of the fit


def test_each_draw_of_the_own_maps_takes_the_next_seed():
    from waferflow.patterns.own_maps import own_map_grids

    synth = DatasetConfig(n_products=20, wafers_per_lot=5)
    one = OwnMapsConfig(per_class=2, seed=5)
    two = one.model_copy(update={"draws": 2})
    assert [own_dataset_config(synth, two, k).seed for k in range(2)] == [5, 6]
    with pytest.raises(ValueError, match="draw 2"):
        own_dataset_config(synth, two, 2)

    first, _, y1 = own_map_grids(synth, one, (32, 32))
    both, shapes, y2 = own_map_grids(synth, two, (32, 32))
    second, _, _ = own_map_grids(synth, OwnMapsConfig(per_class=2, seed=6), (32, 32))
    assert len(both) == len(shapes) == len(y2) == 2 * 2 * 9
    assert all((a == b).all() for a, b in zip(both, first + second))  # draw 0, then draw 1, as drawn alone
    assert not all((a == b).all() for a, b in zip(first, second))  # the second draw holds other maps
    assert sorted(y2.tolist()) == sorted(2 * y1.tolist())
    later, _, _ = own_map_grids(synth, two, (32, 32), first=1)  # the draws after the first alone
    assert len(later) == len(second) and all((a == b).all() for a, b in zip(later, second))


@pytest.mark.parametrize(("tree_draws", "cnn_draws"), [(1, 2), (2, 1)])
def test_the_density_cnn_fits_on_its_own_number_of_draws(tiny_project, tmp_path, tree_draws, cnn_draws):
    """``density_cnn.draws`` beyond the trees' draws more maps for the CNN alone; fewer takes the
    first of the trees' draws. The trees fit on theirs either way, and a fab's wafers stay in both."""
    root = tmp_path / "draws"
    shutil.copytree(tiny_project / "data/processed", root / "data/processed")
    (root / "metrics").mkdir()
    train_file = root / "data/processed/train.parquet"
    train = pd.read_parquet(train_file)
    train.loc[train.index[train["label"].notna()][:20], "source"] = "csv"
    train.to_parquet(train_file)
    params = load_params(tiny_project / "params.yaml")
    own = OwnMapsConfig(per_class=5, seed=3, draws=tree_draws)
    cnn = params.patterns.density_cnn.model_copy(update={"draws": cnn_draws, "seeds": 1})
    params = params.model_copy(
        update={"patterns": params.patterns.model_copy(update={"own_maps": own, "density_cnn": cnn})}
    )

    summary = stage("patterns").run(params, Layout(root), progress=False).values

    assert summary["fitted_on_parts"] == {"training_split": 20, "own_generated": tree_draws * 5 * 9}
    assert summary["density_cnn"]["fitted_on"] == cnn_draws * 5 * 9 + 20
    assert summary["density_cnn"]["draws"] == cnn_draws and summary["density_cnn"]["parity"]["passed"]


def test_the_density_cnns_draws_need_the_own_maps():
    from waferflow.patterns.config import DensityCnnConfig, PatternsConfig

    with pytest.raises(ValueError, match="own_maps is null"):
        PatternsConfig(density_cnn=DensityCnnConfig(draws=2))
    # The CNN's draws resolved once: its own, else the trees'; none without a CNN or without own maps.
    assert PatternsConfig(own_maps=OwnMapsConfig(draws=3), density_cnn=DensityCnnConfig(draws=2)).density_draws == 2
    assert PatternsConfig(own_maps=OwnMapsConfig(draws=3), density_cnn=DensityCnnConfig()).density_draws == 3
    assert PatternsConfig(own_maps=OwnMapsConfig(draws=3)).density_draws is None
    assert PatternsConfig(density_cnn=DensityCnnConfig()).density_draws is None
