import json

import numpy as np
import pandas as pd

from waferflow.gan.ablation import RARE, ablation_table, run_ablation, starve


def test_starve_cuts_only_the_rare_classes_and_is_seeded():
    train = pd.DataFrame({"label": ["Donut"] * 10 + ["Scratch"] * 2 + ["Center"] * 7, "x": range(19)})
    a, b = starve(train, 3, seed=1), starve(train, 3, seed=1)
    counts = a["label"].value_counts().to_dict()
    assert counts == {"Donut": 3, "Scratch": 2, "Center": 7}
    assert a.equals(b) and not a.equals(starve(train, 3, seed=2))


def test_ablation_trains_both_arms_on_the_same_split(tiny_project, tmp_path, monkeypatch):
    from waferflow.config import load_params

    # MLflow exports the tracking URI it is given to the environment: keep this test's store to this test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'ablation.db'}")
    params = load_params(tiny_project / "params.yaml")
    params = params.model_copy(
        update={
            "augment": params.augment.model_copy(
                update={
                    "min_count": 6,
                    "target_count": 8,
                    "gan_steps": 2,
                    "batch_size": 8,
                    "latent_dim": 8,
                    "gen_width": 16,
                    "critic_width": 4,
                    "n_critic": 2,
                    "reference_steps": 3,
                    "min_confidence": 0.0,
                    "min_novelty": 0.0,
                }
            )
        }
    )
    result = run_ablation(params, keep=4, epochs=1, root=tiny_project, progress=False)
    assert all(result["starved_train_counts"][c] == 4 for c in RARE)
    assert result["starved_train_counts"]["Center"] > 4
    assert set(result["gan"]["classes"]) == set(RARE)
    without, with_ = result["arms"]["without_synthetic"], result["arms"]["with_synthetic"]
    assert with_["train_maps"] == without["train_maps"] + result["gan"]["kept_total"]
    assert np.isclose(result["delta_macro_f1"], with_["test_macro_f1"] - without["test_macro_f1"], atol=1e-4)
    assert 0.0 <= without["test_macro_f1"] <= 1.0 and set(without["rare_recall"]) == set(RARE)
    assert (tiny_project / "reports/figures/augment_ablation/Donut.png").is_file()
    table = ablation_table(result)
    assert "with synthetic" in table and "recall Near-full" in table
    json.dumps(result, default=str)
