"""Export a small (untrained) WaferUNet, then serve it: parity, engine, CLI."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import disc
from tests.data.test_parsers import lswmd_frame
from waferflow.cli import app
from waferflow.data.arrays import WaferArrays
from waferflow.inference.engine import InferenceEngine
from waferflow.inference.export import ParityError, export_onnx
from waferflow.models.config import ModelConfig
from waferflow.models.predictor import WaferPredictor
from waferflow.models.wafer_unet import WaferUNet
from waferflow.inference.prediction_log import PredictionLog


@pytest.fixture(scope="module")
def exported(tiny_project, tmp_path_factory):
    import torch

    torch.manual_seed(0)
    net = WaferPredictor(WaferUNet(ModelConfig(encoder_depth=3, decoder_channels=(16, 8, 8))), temperature=1.7).eval()
    val = WaferArrays.from_parquet(tiny_project / "data/processed/val.parquet")
    test = WaferArrays.from_parquet(tiny_project / "data/processed/test.parquet")
    out = tmp_path_factory.mktemp("onnx")
    report = export_onnx(net, out, val.grids, test.grids, test.labels, calibration_size=32, max_int8_f1_drop=1.0)
    return net, out, report, test


def test_onnx_parity_report_and_files(exported):
    net, out, report, test = exported
    assert report["parity"]["passed"] and report["parity"]["wafers"] == len(test)
    assert report["parity"]["max_abs_diff_class_logits"] < 1e-4 and report["parity"]["class_mismatches"] == 0
    assert (
        report["temperature"] == pytest.approx(1.7) and report["int8"]["kept"] and (out / "model.int8.onnx").is_file()
    )
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["input_size"] == [32, 32] and meta["classes"][-1] == "none"


def test_parity_failure_fails_the_export_loudly(exported, tmp_path):
    net, _, _, test = exported
    with pytest.raises(ParityError, match="parity failed"):
        export_onnx(net, tmp_path, test.grids[:8], test.grids[:8], test.labels[:8], tolerance=0.0)
    assert json.loads((tmp_path / "export.json").read_text())["parity"]["passed"] is False


def test_engine_predicts_any_grid_size_back_at_original_shape(exported):
    _, out, _, _ = exported
    engine = InferenceEngine.from_path(out / "model.onnx", threads=1)
    grids = [disc(26, 26, [(13, 13), (13, 14)]), disc(45, 71, [(20, 30)]), disc(9, 12, [(4, 4)])]
    results = engine.predict(grids, top_k=3)
    assert [r["shape"] for r in results] == [[26, 26], [45, 71], [9, 12]]
    for grid, r in zip(grids, results):
        assert r["mask"].shape == grid.shape and not ((r["mask"] > 0) & (grid != 2)).any()
        assert r["class"] == r["top_k"][0]["class"] and len(r["top_k"]) == 3
        assert abs(sum(t["probability"] for t in r["top_k"])) <= 1.0 + 1e-6
        json.dumps({**r, "mask": r["mask"].tolist()})  # JSON-serialisable
    single = engine.predict(grids[0])[0]
    assert single["class"] == results[0]["class"] and single["confidence"] == results[0]["confidence"]


def test_engine_is_thread_safe(exported):
    _, out, _, test = exported
    engine = InferenceEngine.from_path(out / "model.onnx", threads=1)
    grids = list(test.grids[:16])
    expected = [r["confidence"] for r in engine.predict(grids)]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: [r["confidence"] for r in engine.predict(grids)], range(8)))
    assert all(run == expected for run in runs)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5), np.uint8), "empty die grid"),
        (np.array([1, 2, 1], np.uint8), "2-D"),
        (np.full((5, 5), 3, np.uint8), "die codes must be"),
        (np.zeros((5, 5), np.uint8), "no die"),
    ],
)
def test_bad_input_is_a_clear_error(exported, bad, message):
    engine = InferenceEngine.from_path(exported[1] / "model.onnx")
    with pytest.raises(ValueError, match=message):
        engine.predict([bad])


def test_predict_cli_writes_json_csv_and_overlays(exported, tmp_path):
    _, out, _, _ = exported
    frame = lswmd_frame()
    frame.at[3, "waferMap"] = np.full((6, 6), 7, np.uint8)  # not die codes: reported, not predicted
    frame.to_pickle(tmp_path / "LSWMD.pkl")
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "LSWMD.pkl"),
            "--model",
            str(out / "model.onnx"),
            "--out",
            str(tmp_path / "pred"),
            "--overlay",
            "--prediction-log",
            str(tmp_path / "log"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 wafers predicted" in result.output and "die codes must be" in result.output
    lines = (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()
    assert "3 wafers logged" in result.output  # one file per predicted batch: here one wafer at a time
    logged = PredictionLog(tmp_path / "log").read(days=1)
    assert sorted(logged["wafer_id"]) == sorted(json.loads(line)["wafer_id"] for line in lines)
    lines = (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["shape"] == [30, 34]
    assert len((tmp_path / "pred" / "predictions.csv").read_text().splitlines()) == 4
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 3
    missing = CliRunner().invoke(app, ["predict", str(tmp_path / "LSWMD.pkl"), "--model", str(tmp_path / "no.onnx")])
    assert missing.exit_code == 1 and "export stage" in missing.output


def test_engine_serves_an_export_from_before_the_predictor_held_its_post_processing(exported, tmp_path):
    """Versions exported before: logits out, temperature in metadata.json; the engine applies both."""
    import torch

    from waferflow.classes import CLASSES

    predictor, out, _, test = exported
    torch.onnx.export(
        predictor.net,
        (torch.zeros(1, 2, 32, 32),),
        str(tmp_path / "model.onnx"),
        input_names=["input"],
        output_names=["mask_logits", "class_logits"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"input": {0: "batch"}, "mask_logits": {0: "batch"}, "class_logits": {0: "batch"}},
    )
    (tmp_path / "metadata.json").write_text(
        json.dumps({"classes": list(CLASSES), "input_size": [32, 32], "temperature": 1.7})
    )
    legacy = InferenceEngine.from_path(tmp_path / "model.onnx").predict_arrays(test.grids[:8])
    current = InferenceEngine.from_path(out / "model.onnx").predict_arrays(test.grids[:8])
    np.testing.assert_allclose(legacy[0], current[0], atol=1e-5)
    assert np.array_equal(legacy[1], current[1])


def test_engine_blends_the_pattern_trees_at_each_wafers_own_size(exported, tiny_project, tmp_path):
    """An export with the patterns stage's trees: the engine's class is the blend, its trees see the
    wafer at its own size (not the model input), and an export without them serves the graph."""
    from waferflow.config import load_params
    from waferflow.data.resize import resize_grid
    from waferflow.layout import Layout
    from waferflow.patterns.features import pattern_features
    from waferflow.patterns.trees import PatternClassifier
    from waferflow.stages import stage

    net, plain, _, test = exported
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "params.yaml").write_text((tiny_project / "params.yaml").read_text())
    (project / "data/processed").symlink_to(tiny_project / "data/processed")
    stage("patterns").run(load_params(project / "params.yaml"), Layout(project), progress=False)
    trees = PatternClassifier.from_dir(project / "data/patterns")
    out = tmp_path / "onnx"
    export_onnx(net, out, test.grids, test.grids, test.labels, calibration_size=8, max_int8_f1_drop=1.0, patterns=trees)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["patterns"]["file"] == "patterns.onnx" and (out / "patterns.onnx").is_file()
    assert meta["patterns"]["density"]["file"] == "density.onnx" and (out / "density.onnx").is_file()
    assert 0 < trees.density_weight < 1 - trees.unet_weight  # the tiny params serve the CNN too

    engine, graph_only = (
        InferenceEngine.from_path(out / "model.onnx", threads=1),
        InferenceEngine.from_path(plain / "model.onnx", threads=1),
    )
    grids = [disc(26, 26, [(13, 13), (13, 14)]), disc(45, 71, [(20, 30), (20, 31), (21, 30)]), disc(9, 12, [(4, 4)])]
    served, unet = engine.predict(grids, top_k=9), graph_only.predict(grids, top_k=9)
    for grid, s, u in zip(grids, served, unet):
        u_probs = np.array([dict((t["class"], t["probability"]) for t in u["top_k"])[c] for c in engine.classes])
        # the trees see the model input resized back to the wafer's size: the wafer itself when it
        # is no larger than the input (26 x 26, 9 x 12 here), a resampled one otherwise (45 x 71)
        seen = resize_grid(resize_grid(grid, engine.input_size), grid.shape)
        assert np.array_equal(seen, grid) == (max(grid.shape) <= max(engine.input_size))
        t_probs = trees.proba_features(pattern_features(seen)[None])[0]
        # the density CNN reads the model input itself
        c_probs = trees.proba_density(resize_grid(grid, engine.input_size)[None])[0]
        w, wc = trees.unet_weight, trees.density_weight
        expected = w * u_probs + wc * c_probs + (1 - w - wc) * t_probs
        got = np.array([dict((t["class"], t["probability"]) for t in s["top_k"])[c] for c in engine.classes])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert s["class"] == engine.classes[int(expected.argmax())]
        assert np.array_equal(s["mask"], u["mask"])  # the masks are the U-Net's
