"""A real (tiny) training run end to end: fit, MLflow run, registry, evaluation."""

import json

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.data.test_parsers import lswmd_frame
from tests.conftest import own_mlflow_store
from waferflow.config import load_params
from waferflow.data.arrays import WaferArrays
from waferflow.evaluation.evaluate import evaluate_real_data, real_summary
from waferflow.layout import Layout
from waferflow.patterns.features import original_shapes
from waferflow.patterns.trees import PatternClassifier
from waferflow.evaluation.real_maps import PARTS, load_real_frame, real_part
from waferflow.registry.pyfunc import load_weights
from waferflow.stages import stage


@pytest.fixture(scope="module")
def trained(tiny_project, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    own_mlflow_store(mp)
    mp.chdir(tiny_project)
    params = load_params(tiny_project / "params.yaml")
    layout = Layout(tiny_project)
    first = stage("train").run(params, layout).values  # with the pattern trees of tiny_project's patterns stage
    yield params, layout, first
    mp.undo()


def test_one_epoch_beats_chance_and_is_tracked(trained):
    params, layout, info = trained
    assert info["epochs_trained"] == 1
    assert info["best_val_macro_f1"] > 2 / 9  # chance is 1/9
    assert (layout.root / info["checkpoint"]).is_file() and (layout.models / "weights.pt").is_file()
    run = MlflowClient().get_run(info["run_id"])
    assert run.data.params["train.max_epochs"] == "1" and run.data.params["model.encoder_depth"] == "3"
    assert run.data.tags["data_version"].startswith(("dvc:", "sha256:")) and "git_commit" in run.data.tags
    history = MlflowClient().get_metric_history(info["run_id"], "val_macro_f1")
    assert len(history) == 1
    assert json.loads((layout.metrics / "train.json").read_text())["alias"] == info["alias"]


def test_registry_round_trip_same_predictions_and_aliases(trained):
    params, layout, info = trained
    name = params.mlflow.registered_model
    assert info["alias"] == "champion"
    grids = WaferArrays.from_parquet(layout.processed / "test.parquet").grids[:8]
    test = WaferArrays.from_parquet(layout.processed / "test.parquet").take(np.arange(8))
    grids, shapes = test.grids, original_shapes(test.frame, test.grids)
    local_probs, local_masks = load_weights(layout.models / "weights.pt").predict(grids)
    trees = PatternClassifier.from_dir(layout.root / "data/patterns")
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    served = model.predict(grids)
    # The registered model serves the blended class, as the engine does: the trees travel inside it.
    np.testing.assert_allclose(served["unet_probs"], local_probs, atol=1e-5)
    np.testing.assert_allclose(served["class_probs"], trees.blend(local_probs, grids), atol=1e-5)
    assert np.array_equal(served["mask"], local_masks)
    # With each wafer's own shape, the trees' features are taken at that size.
    heights, widths = ([int(s[k]) for s in shapes] for k in (0, 1))
    own = model.predict(grids, params={"heights": heights, "widths": widths})
    np.testing.assert_allclose(own["class_probs"], trees.blend(local_probs, grids, shapes), atol=1e-5)
    with pytest.raises(Exception, match="one per wafer"):
        model.predict(grids, params={"heights": heights[:3], "widths": widths[:3]})
    tags = MlflowClient().get_model_version(name, info["version"]).tags
    assert tags["run_id"] == info["run_id"] and "data_version" in tags and "pattern trees" in tags["served_class"]
    second = stage("train").run(params, layout).values
    aliases = {k: str(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}
    assert second["alias"] == "challenger" and aliases == {"champion": info["version"], "challenger": second["version"]}


def test_patterns_stage_writes_onnx_trees_that_learned_the_patterns(trained):
    params, layout, _ = trained
    summary = json.loads((layout.metrics / "patterns.json").read_text())
    assert summary["parity"]["passed"] and summary["parity"]["class_mismatches"] == 0
    assert summary["parity"]["wafers"] == summary["generated_val"]["wafers"] + summary["generated_test"]["wafers"]
    assert summary["generated_val"]["macro_f1"] > 3 / 9  # chance is 1/9
    assert (layout.root / summary["plot"]).stat().st_size > 5_000
    meta = json.loads((layout.root / "data/patterns/patterns.json").read_text())
    assert meta["unet_weight"] == params.patterns.unet_weight and len(meta["features"]) == summary["features"] == 113
    off = params.model_copy(update={"patterns": params.patterns.model_copy(update={"enabled": False})})
    tmp = layout.root / "patterns-off"
    (tmp / "metrics").mkdir(parents=True, exist_ok=True)
    disabled = stage("patterns").run(off, Layout(tmp)).values
    assert disabled["enabled"] is False and PatternClassifier.from_dir(tmp / "data/patterns") is None


def test_evaluate_stage_writes_metrics_plots_and_tags(trained):
    params, layout, info = trained
    headline = stage("evaluate").run(params, layout).values
    saved = json.loads((layout.metrics / "evaluate.json").read_text())
    assert saved["test_macro_f1"] == headline["test_macro_f1"] and 0 <= saved["test_mean_iou"] <= 1
    assert "pattern trees" in saved["served"] and "density CNN" in saved["served"]  # the tiny params serve both
    assert set(saved["components"]) == {"unet", "patterns", "density_cnn"}
    assert all(0 <= part["macro_f1"] <= 1 for part in saved["components"].values())
    assert set(saved["per_class"]) == {
        "Center",
        "Donut",
        "Edge-Loc",
        "Edge-Ring",
        "Loc",
        "Near-full",
        "Random",
        "Scratch",
        "none",
    }
    for png in ("confusion_matrix.png", "roc.png", "worst_errors.png"):
        assert (layout.reports / "evaluation" / png).stat().st_size > 5_000
    assert json.loads((layout.metrics / "evaluate_real.json").read_text())["available"] is False
    latest = json.loads((layout.models / "train_run.json").read_text())
    tags = MlflowClient().get_model_version(params.mlflow.registered_model, latest["version"]).tags
    assert tags["test_macro_f1"] == f"{headline['test_macro_f1']:.4f}"
    artifacts = {a.path for a in MlflowClient().list_artifacts(latest["run_id"], "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts
    assert MlflowClient().get_run(latest["run_id"]).data.metrics["test_macro_f1"] == headline["test_macro_f1"]


def test_real_data_is_evaluated_apart_on_dev_and_test_lots(trained, tmp_path):
    params, layout, _ = trained
    real = tmp_path / "wm811k"
    real.mkdir()
    frame = lswmd_frame()
    lots = {part: next(f"lot{i}" for i in range(100) if real_part(f"lot{i}") == part) for part in PARTS}
    frame["lotName"] = [lots["dev"], lots["dev"], lots["test"], lots["test"]]
    frame["failureType"] = [np.array([[c]], dtype=object) for c in ("none", "Edge-Ring", "Loc", "none")]
    frame.to_pickle(real / "LSWMD.pkl")
    loaded, info = load_real_frame(real)
    out = evaluate_real_data(load_weights(layout.models / "weights.pt"), loaded, info, (32, 32), tmp_path / "plots")
    assert out["available"] and out["wafers"] == 4 and out["lots"] == 2
    for part in PARTS:
        assert out["parts"][part]["wafers"] == 2 and out["parts"][part]["classification"]["n_wafers"] == 2
        for png in ("confusion_matrix", "error_gallery", "worst_errors"):
            assert (tmp_path / "plots" / f"real_{part}_{png}.png").stat().st_size > 5_000
    summary = real_summary(out, "7")
    assert list(summary)[-2:] == ["test", "dev"] and summary["test"]["wafers"] == 2 and summary["model_version"] == "7"
    per_class = summary["test"]["per_class"].values()
    assert summary["test"]["min_recall"] == min(v["recall"] for v in per_class if v["support"])
    for part in PARTS:  # one lot a part: nothing to resample, and the summary says so
        intervals = summary[part]["intervals"]
        assert intervals["lots"] == 1 and intervals["macro_f1"] is None and "two or more" in intervals["reason"]
        assert intervals["recall"].keys() == {c for c, v in summary[part]["per_class"].items() if v["support"]}


def test_export_stage_logs_onnx_beside_the_version_and_engine_loads_by_alias(trained):
    from waferflow.classes import CLASSES
    from waferflow.inference.engine import InferenceEngine
    from waferflow.patterns.trees import PatternClassifier, served_class

    params, layout, _ = trained
    with pytest.raises(FileNotFoundError, match="dvc repro novelty"):  # the export needs the novelty head
        stage("export").run(params, layout)
    novelty = stage("novelty").run(params, layout, progress=False).values
    assert novelty["stages"] == [1, 3] and set(novelty["auroc_vs_test_split"]) == {"novel_pattern", "mixed_pattern"}
    assert (layout.root / "data/novelty/head.pt").is_file()
    triage = json.loads((layout.root / "data/novelty/triage.json").read_text())
    assert triage["class_probs"] == served_class(PatternClassifier.from_dir(layout.root / "data/patterns"))
    assert "pattern trees" in triage["class_probs"] and "density CNN" in triage["class_probs"]  # both served
    summary = stage("export").run(params, layout).values
    latest = json.loads((layout.models / "train_run.json").read_text())
    assert summary["parity_passed"] and summary["model_version"] == latest["version"]
    assert json.loads((layout.metrics / "export.json").read_text())["parity_passed"] is True
    engine = InferenceEngine.from_registry(params.mlflow.registered_model, latest["alias"])
    assert engine.model_version == latest["version"] and engine.temperature == summary["temperature"]
    assert summary["pattern_trees"] and engine.patterns is not None  # the trees travel beside the graph
    grids = WaferArrays.from_parquet(layout.processed / "test.parquet").grids[:12]
    served = engine.predict(list(grids))
    local = load_weights(layout.models / "weights.pt")
    assert float(local.temperature) == pytest.approx(latest["temperature"]) != 1.0  # calibrated in the train stage
    local_probs, _ = local.predict(grids)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{params.mlflow.registered_model}@{latest['alias']}").predict(grids)
    # One U-Net behind every path: torch, the registered pyfunc and the ONNX graph agree ...
    np.testing.assert_allclose(pyfunc["unet_probs"], local_probs, atol=1e-5)
    # ... and the engine serves it blended with the pattern trees of the patterns stage, as the pyfunc does.
    trees = PatternClassifier.from_dir(layout.root / "data/patterns")
    blended = trees.blend(local_probs, grids)
    np.testing.assert_allclose(pyfunc["class_probs"], blended, atol=1e-5)
    assert [r["class"] for r in served] == [CLASSES[i] for i in blended.argmax(1)]
    np.testing.assert_allclose([r["confidence"] for r in served], blended.max(1), atol=1e-5)
    w, wc = trees.unet_weight, trees.density_weight
    factors = np.array([trees.class_weights.get(c, 1.0) for c in CLASSES])
    plain = (w * local_probs + wc * trees.proba_density(grids) + (1 - w - wc) * trees.proba(grids)) * factors
    np.testing.assert_allclose(blended, plain / plain.sum(1, keepdims=True), atol=1e-6)
    assert all(r["triage"]["decision"] in ("PASS", "REVIEW", "REJECT") for r in served)  # triage in the graph
    assert summary["max_abs_diff_novelty"] < 1e-3
    tags = MlflowClient().get_model_version(params.mlflow.registered_model, latest["version"]).tags
    assert tags["onnx_parity_passed"] == "True"


def test_fine_tuning_starts_from_given_weights_file_or_registered_version(trained):
    import torch

    from waferflow.models.config import ModelConfig
    from waferflow.quickfit import fit_quick
    from waferflow.registry.pyfunc import load_initial_weights

    params, layout, info = trained
    by_file, where = load_initial_weights("models/weights.pt", layout.root)
    by_alias, version = load_initial_weights(f"models:/{params.mlflow.registered_model}@champion")
    assert where == str(layout.root / "models/weights.pt") and version.startswith("models:/") and version[-1].isdigit()
    champion = MlflowClient().get_model_version_by_alias(params.mlflow.registered_model, "champion").version
    assert version.endswith(f"/{champion}")
    data = WaferArrays.from_parquet(layout.processed / "val.parquet")
    tuned = fit_quick(data, steps=1, lr=1e-7, model=params.model, init=by_file.net)
    fresh = fit_quick(data, steps=1, lr=1e-7, model=params.model)
    start = dict(by_file.net.named_parameters())
    drift = {name: (p - start[name]).abs().max().item() for name, p in tuned.named_parameters()}
    assert max(drift.values()) < 1e-3  # one step at a tiny learning rate: still the given weights
    assert max((p - start[n]).abs().max().item() for n, p in fresh.named_parameters()) > 0.05
    with pytest.raises(RuntimeError, match="do not fit model in params.yaml"):
        fit_quick(data, steps=1, model=ModelConfig(encoder_depth=4, decoder_channels=(32, 16, 8, 8)), init=by_file.net)
    with pytest.raises(FileNotFoundError, match="train.init_from"):
        load_initial_weights("models/missing.pt", layout.root)
    assert (
        torch.equal(next(iter(by_file.net.state_dict().values())), next(iter(by_alias.net.state_dict().values())))
        or info["alias"] != "champion"
    )


def test_self_training_adds_confident_pseudo_labels_and_tags_the_run(tiny_project, tmp_path, monkeypatch):
    import shutil

    import yaml

    from waferflow.data.records import read_frame

    own_mlflow_store(monkeypatch)
    root = tmp_path / "semi"
    for folder in ("data/processed", "data/patterns"):
        shutil.copytree(tiny_project / folder, root / folder)
    raw = yaml.safe_load((tiny_project / "params.yaml").read_text())
    raw["train"]["pseudo_label_threshold"] = 0.2
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(root)
    info = stage("train").run(load_params(root / "params.yaml"), Layout(root)).values
    pseudo = read_frame(root / "models/pseudo_labels.parquet")
    pool = read_frame(root / "data/processed/unlabeled.parquet")
    assert 0 < len(pseudo) <= len(pool) and int(info["pseudo_labeled"]) == len(pseudo)
    assert (
        pseudo["label"]
        .isin(["Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none"])
        .all()
        and pseudo["defect_mask"].isna().all()
    )
    confidences = [json.loads(a)["pseudo_confidence"] for a in pseudo["attrs"]]
    assert min(confidences) >= 0.2
    tags = MlflowClient().get_run(info["run_id"]).data.tags
    teacher = MlflowClient().get_run(tags["teacher_run_id"]).data.tags
    assert tags["pseudo_labeled"] == str(len(pseudo)) and teacher["role"].startswith("teacher")


def test_a_test_split_of_several_sources_is_also_scored_per_source(trained):
    params, layout, _ = trained
    test = WaferArrays.from_parquet(layout.processed / "test.parquet")
    net = load_weights(layout.models / "weights.pt")
    per_source = stage("evaluate").module().per_source
    assert per_source(net, test) == {}  # one source: nothing more to say
    test.frame["source"] = ["lswmd" if i % 3 == 0 else "synth" for i in range(len(test))]
    out = per_source(net, test)["per_source"]
    assert set(out) == {"lswmd", "synth"} and out["lswmd"]["wafers"] + out["synth"]["wafers"] == len(test)
    assert all(0 <= s["macro_f1"] <= 1 and s["lots"] >= 1 for s in out.values())


def test_train_stage_fails_before_the_fit_without_the_patterns_stage(tiny_project, tmp_path, monkeypatch):
    import shutil

    own_mlflow_store(monkeypatch)
    root = tmp_path / "no-patterns"
    shutil.copytree(tiny_project / "data/processed", root / "data/processed")
    shutil.copy(tiny_project / "params.yaml", root / "params.yaml")
    monkeypatch.chdir(root)
    with pytest.raises(FileNotFoundError, match=r"patterns\.json is missing: run the patterns stage"):
        stage("train").run(load_params(root / "params.yaml"), Layout(root))
    assert not (root / "models").exists()  # nothing fitted, nothing registered
