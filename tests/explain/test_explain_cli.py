"""`waferflow predict --explain` over the registry's champion: a picture per wafer."""

import pytest
from typer.testing import CliRunner

from waferflow.cli import app
from waferflow.data.records import write_records


def test_predict_explain_writes_map_mask_and_activation_per_wafer(project, small_records, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    maps = write_records(small_records[:4], tmp_path / "maps.parquet")
    out = tmp_path / "pred"
    args = ["predict", str(maps), "--out", str(out), "--explain", "--prediction-log", "off"]
    result = CliRunner().invoke(app, [*args, "--method", "gradcam++"])
    assert result.exit_code == 0, result.output
    pictures = sorted((out / "explanations").glob("*.png"))
    assert len(pictures) == 4 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)
    from PIL import Image

    width, height = Image.open(pictures[0]).size  # four panels: map | mask | activation | novelty
    assert width > 3.2 * height, (width, height)
    rows = (out / "predictions.csv").read_text().splitlines()
    assert "triage" in rows[0].split(",") and all(("PASS" in r) or ("REVIEW" in r) or ("REJECT" in r) for r in rows[1:])
    assert "explanations (gradcam++) of 4 wafers" in result.output and "triage: PASS" in result.output
    assert "similar wafers: none" in result.output  # no index in this project yet
    import httpx

    from waferflow.serve.app import create_app, running

    wafer = {"die_grid": small_records[0].die_grid.tolist(), "lot_id": "L", "wafer_id": "1"}
    with running(create_app(project / "params.yaml", poll=False)) as url, httpx.Client(base_url=url, timeout=60) as c:
        picture = c.post("/v1/explain?method=gradcam%2B%2B", json=wafer)
        assert picture.status_code == 200 and picture.content[:8] == b"\x89PNG\r\n\x1a\n", picture.text
        two = c.post("/v1/explain", json={"wafers": [wafer, wafer]})
        assert two.status_code == 422 and "one wafer" in two.json()["detail"]
        pair = {"wafers": [wafer, {**wafer, "wafer_id": "2"}]}  # the predict page picks one of the files' wafers
        picked = c.post("/v1/explain?lot_id=L&wafer_id=2", json=pair)
        assert picked.status_code == 200 and picked.content[:8] == b"\x89PNG\r\n\x1a\n", picked.text
        missing = c.post("/v1/explain?lot_id=L&wafer_id=9", json=pair)
        assert missing.status_code == 422 and "no wafer L/9" in missing.json()["detail"]
    with_model = CliRunner().invoke(app, [*args, "--model", str(tmp_path / "model.onnx")])
    assert with_model.exit_code == 1 and "--explain needs a registry model" in with_model.output
    bad_method = CliRunner().invoke(app, [*args, "--method", "lime"])
    assert bad_method.exit_code == 1 and "gradcam or gradcam++" in bad_method.output


def test_the_index_stage_and_similar_answer_past_wafers_of_the_trained_model(
    project, small_records, tmp_path, monkeypatch
):
    import json

    from waferflow.config import load_params
    from waferflow.layout import Layout
    from waferflow.registry.pyfunc import save_weights
    from waferflow.stages import stage
    from waferflow.training.lightning_module import WaferLitModule

    layout = Layout(project)
    net = WaferLitModule.load_from_checkpoint(layout.models / "best.ckpt", map_location="cpu").net.eval()
    save_weights(net, layout.models / "weights.pt")
    (layout.models / "train_run.json").write_text(json.dumps({"version": "3", "weights": "models/weights.pt"}))
    built = stage("index").run(load_params(project / "params.yaml"), layout, progress=False).values
    assert built["wafers"] == sum(built["by_split"].values()) > 0 and built["model_version"] == "3"
    assert 0 <= built["test_precision_at_10"] <= 1

    monkeypatch.chdir(project)
    maps = write_records(small_records[:3], tmp_path / "maps.parquet")
    result = CliRunner().invoke(app, ["similar", str(maps), "-k", "4", "--out", str(tmp_path / "sim")])
    assert result.exit_code == 0, result.output
    answer = json.loads((tmp_path / "sim" / "similar.json").read_text())
    assert answer["model_version"] == "3" and len(answer["wafers"]) == 3
    for wafer in answer["wafers"]:
        near = wafer["neighbours"]
        assert len(near) == 4 and [n["distance"] for n in near] == sorted(n["distance"] for n in near)
        assert {"lot_id", "wafer_id", "label", "split"} <= set(near[0])
        assert (tmp_path / "sim" / "galleries").joinpath(wafer["gallery"].rsplit("/", 1)[-1]).is_file()

    import httpx

    from waferflow.serve.app import create_app, running

    wafers = [{"die_grid": r.die_grid.tolist(), "lot_id": r.lot_id, "wafer_id": r.wafer_id} for r in small_records[:2]]
    with running(create_app(project / "params.yaml", poll=False)) as url, httpx.Client(base_url=url, timeout=60) as c:
        served = c.post("/v1/similar?k=3", json={"wafers": wafers})
        assert served.status_code == 200, served.text
        body = served.json()
        assert body["index_model_version"] == "3" and [len(w["neighbours"]) for w in body["wafers"]] == [3, 3]
        for api, cli in zip(body["wafers"], answer["wafers"]):  # the CLI's answer, to float noise
            assert [n["distance"] for n in api["neighbours"]] == pytest.approx(
                [n["distance"] for n in cli["neighbours"][:3]], abs=1e-4
            )

    # production wafers of the prediction log join as past wafers (stage index_log)
    import pandas as pd

    from waferflow.active.labels import LABEL_COLUMNS, STORE_NAME
    from waferflow.explain.similar import LOG_INDEX, past_index
    from waferflow.inference.prediction_log import PredictionLog

    params = load_params(project / "params.yaml")
    params = params.model_copy(
        update={
            "drift": params.drift.model_copy(update={"prediction_log": str(tmp_path / "log")}),
            "al": params.al.model_copy(update={"labels_dir": str(tmp_path / "labels")}),
        }
    )
    grids = [r.die_grid for r in small_records[:3]]
    told = [
        {"lot_id": "PROD", "wafer_id": str(i), "model_version": "3", "class": "Loc", "confidence": 0.5}
        for i in range(3)
    ]
    plog = PredictionLog(tmp_path / "log")
    plog.append(told, grids, alias="champion")
    plog.append(told[:1], grids[:1], alias="champion")  # predicted again: still one past wafer
    plog.append(told, grids, alias="challenger")  # the shadow's answers to the same wafers
    labeled_one = pd.read_parquet(project / "data/index/wafers.parquet").iloc[0]
    plog.append([{**told[0], "lot_id": labeled_one["lot_id"], "wafer_id": labeled_one["wafer_id"]}], grids[:1])
    (tmp_path / "labels").mkdir()
    review = {"lot_id": "PROD", "wafer_id": "2", "label": "Scratch", "annotator": "fa", "round": 1}
    pd.DataFrame([review], columns=LABEL_COLUMNS).to_parquet(tmp_path / "labels" / STORE_NAME)
    try:
        logged = stage("index_log").run(params, layout, progress=False)
        assert logged.values["log_rows_read"] == 8 and logged.values["wafers"] == 3 and logged.values["reviewed"] == 1
        assert "3 production wafers" in logged.summary
        assert past_index(project)[1] == f"{built['wafers']} labeled + 3 production wafers"
        result = CliRunner().invoke(app, ["similar", str(maps), "-k", "4", "--out", str(tmp_path / "sim_log")])
        assert result.exit_code == 0, result.output
        assert "against " + past_index(project)[1] in result.output
        for i, wafer in enumerate(json.loads((tmp_path / "sim_log" / "similar.json").read_text())["wafers"]):
            twin = wafer["neighbours"][0]  # the same die grid, logged in production
            assert (twin["lot_id"], twin["wafer_id"], twin["split"]) == ("PROD", str(i), "log")
            assert twin["distance"] < 1e-4 and twin["predicted_class"] == "Loc"
            assert twin["label"] == ("Scratch" if i == 2 else None)
        with running(create_app(project / "params.yaml", poll=False)) as url, httpx.Client(base_url=url) as c:
            served = c.post("/v1/similar?k=12", json={"wafers": wafers})  # labeled and production neighbours
            assert served.status_code == 200, served.text  # strict JSON: no NaN for a column one side lacks
            near = [n for w in served.json()["wafers"] for n in w["neighbours"]]
            assert {n["split"] for n in near} > {"log"} and all(
                n["predicted_class"] is None for n in near if n["split"] != "log"
            )
        (layout.models / "train_run.json").write_text(json.dumps({"version": "9", "weights": "models/weights.pt"}))
        with pytest.raises(RuntimeError, match="run `dvc repro index` first"):
            stage("index_log").run(params, layout, progress=False)
        (layout.models / "train_run.json").write_text(json.dumps({"version": "3", "weights": "models/weights.pt"}))
    except BaseException:
        import shutil

        shutil.rmtree(project / LOG_INDEX, ignore_errors=True)
        raise

    (layout.models / "train_run.json").write_text(json.dumps({"version": "4", "weights": "models/weights.pt"}))
    stale = CliRunner().invoke(app, ["similar", str(maps), "--out", str(tmp_path / "sim2")])
    assert stale.exit_code == 1 and "dvc repro index" in stale.output

    # predict --explain adds the similar wafers when the served version built the index
    from tests.serve.conftest import versions

    champion = versions(project)["champion"]
    (layout.models / "train_run.json").write_text(json.dumps({"version": champion, "weights": "models/weights.pt"}))
    stage("index").run(load_params(project / "params.yaml"), layout, progress=False)
    out = tmp_path / "pred"
    explained = CliRunner().invoke(
        app, ["predict", str(maps), "--out", str(out), "--explain", "--prediction-log", "off"]
    )
    assert explained.exit_code == 0, explained.output
    assert "similar wafers: the 10 nearest past wafers of 3 wafers" in explained.output
    similar = json.loads((out / "similar" / "similar.json").read_text())
    assert similar["model_version"] == champion and all(len(w["neighbours"]) == 10 for w in similar["wafers"])
    # the production wafers' index is of version 3, the labeled one now of the champion's: not mixed
    assert all(n["split"] != "log" for w in similar["wafers"] for n in w["neighbours"])
    assert "index is of model version 3" in past_index(project)[1]
    import shutil

    shutil.rmtree(project / LOG_INDEX)
