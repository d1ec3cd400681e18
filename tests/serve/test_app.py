"""`waferflow serve`: a real uvicorn server on loopback over a copy of the served test project
(champion and challenger registered, tiny U-Nets exported to ONNX)."""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.serve.conftest import set_params as _set
from tests.serve.conftest import versions as _versions
from waferflow.data.records import WaferRecord, write_records
from waferflow.inference.prediction_log import PredictionLog
from waferflow.registry.gate import promote
from waferflow.serve.app import ServeConfigError, api_keys, create_app, running
from waferflow.serve.models import probe_grid


def test_predict_json_one_and_many_with_the_challenger_in_the_shadow(project, served):
    app, client = served
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    aliases = _versions(project)
    assert ready == {"ready": True, "champion": aliases["champion"], "challenger": aliases["challenger"]}

    grid = probe_grid(40).tolist()
    one = client.post("/v1/predict", json={"die_grid": grid, "lot_id": "L1", "wafer_id": "W1"})
    assert one.status_code == 200, one.text
    (wafer,) = one.json()["wafers"]
    assert (wafer["lot_id"], wafer["wafer_id"], wafer["model_version"]) == ("L1", "W1", aliases["champion"])
    assert 0 < wafer["confidence"] <= 1 and len(wafer["top_k"]) == 3
    assert np.asarray(wafer["mask"]).shape == (40, 40) and "severity" in wafer["defects"]

    batch = client.post("/v1/predict?mask=false&top_k=2", json={"wafers": [{"die_grid": grid}] * 5})
    body = batch.json()
    assert batch.status_code == 200 and len(body["wafers"]) == 5 and body["shadow_version"] == aliases["challenger"]
    assert "mask" not in body["wafers"][0] and len(body["wafers"][0]["top_k"]) == 2
    assert len({w["wafer_id"] for w in body["wafers"]}) == 5  # unnamed wafers get unique ids: the log pairs them

    deadline = time.monotonic() + 60
    while (shadow := client.get("/v1/models").json()["shadow"])["compared"] < 6:
        assert time.monotonic() < deadline, shadow
        time.sleep(0.1)
    assert shadow["shadowed"] == 2 and shadow["failed"] == 0 and 0 <= shadow["agreement"] <= 1
    metrics = client.get("/metrics").text
    assert 'waferflow_served_model_version{alias="champion"} ' + aliases["champion"] in metrics
    assert 'waferflow_shadow_batches_total{outcome="shadowed"} 2.0' in metrics
    assert "http_request_duration_seconds_bucket" in metrics
    predicted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("waferflow_wafers_predicted_total")
    )
    assert predicted == 6

    app.state.models.stop()  # waits for the shadow: both aliases are in the prediction log
    log = PredictionLog(project.parent / "log").read(days=1)
    assert set(log["alias"]) == {"champion", "challenger"} and (log["alias"] == "champion").sum() == 6


def test_bad_wafers_are_refused_naming_them_and_the_reason(served):
    _, client = served
    good = probe_grid(20).tolist()
    bad = client.post(
        "/v1/predict",
        json={
            "wafers": [
                {"die_grid": good},
                {"die_grid": [[1, 7], [1, 1]], "wafer_id": "X9"},
                {"die_grid": [[1], [1, 2]]},
            ]
        },
    )
    assert bad.status_code == 422
    problems = bad.json()["detail"]["wafers"]
    assert [p["wafer"] for p in problems] == [1, 2]
    assert problems[0]["wafer_id"] == "X9" and "die codes must be 0" in problems[0]["reason"]
    assert "ragged" in problems[1]["reason"]
    assert (
        client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert client.post("/v1/predict", json={"wafers": []}).status_code == 422
    assert client.post("/v1/predict?overlay=png", json={"wafers": [{"die_grid": good}] * 2}).status_code == 422
    metrics = client.get("/metrics").text
    assert 'waferflow_prediction_errors_total{reason="bad_wafer"} 1.0' in metrics
    assert client.get("/readyz").status_code == 200  # nothing a client sent took the worker down


def test_limits_on_wafers_and_body_size(project):
    _set(project, "serve", max_wafers=3, max_request_mb=0.01)
    app = create_app(project / "params.yaml", poll=False)
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        small = probe_grid(8).tolist()
        many = client.post("/v1/predict", json={"wafers": [{"die_grid": small}] * 4})
        assert many.status_code == 413 and "at most 3" in many.json()["detail"]
        big = client.post("/v1/predict", json={"die_grid": probe_grid(80).tolist()})
        assert big.status_code == 413 and "serve.max_request_mb" in big.json()["detail"]


def test_uploaded_map_files_in_ingest_formats_and_the_overlay_picture(served, tmp_path):
    _, client = served
    path = write_records(
        [WaferRecord(die_grid=probe_grid(30), lot_id="LOTX", wafer_id=str(i)) for i in range(3)],
        tmp_path / "maps.parquet",
    )
    files = [
        ("files", ("maps.parquet", path.read_bytes(), "application/octet-stream")),
        ("files", ("broken.pkl", b"not a pickle", "application/octet-stream")),
    ]
    answer = client.post("/v1/predict?mask=false", files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(w["lot_id"], w["wafer_id"]) for w in body["wafers"]] == [("LOTX", "0"), ("LOTX", "1"), ("LOTX", "2")]
    (reject,) = body["rejected"]
    assert reject["file"] == "broken.pkl" and reject["reason"]
    only_bad = client.post("/v1/predict", files=[files[1]])
    assert only_bad.status_code == 422 and only_bad.json()["detail"]["rejected"][0]["file"] == "broken.pkl"

    png = client.post("/v1/predict?overlay=png", json={"die_grid": probe_grid(30).tolist()})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert min(Image.open(io.BytesIO(png.content)).size) > 100


def test_a_promotion_is_picked_up_without_a_failed_request(project, served):
    app, client = served
    before = _versions(project)
    grid = probe_grid(24).tolist()
    statuses, versions, stop = [], [], threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answer = client.post("/v1/predict?mask=false", json={"die_grid": grid})
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                versions.append(answer.json()["model_version"])

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(hammer)
        time.sleep(1.0)
        promote("monitor-test-model", before["challenger"], reason="serve test")
        assert app.state.models.refresh()  # what the poller does every serve.poll_seconds
        time.sleep(1.0)
        stop.set()
    assert statuses and set(statuses) == {200}, statuses
    assert versions[0] == before["champion"] and versions[-1] == before["challenger"]
    models = client.get("/v1/models").json()
    assert models["champion"]["version"] == before["challenger"] and models["challenger"] is None
    assert models["swaps"] == 1 and models["last_error"] is None


def test_a_public_address_needs_an_api_key(project, monkeypatch):
    monkeypatch.delenv("WAFERFLOW_API_KEYS", raising=False)
    with pytest.raises(ServeConfigError, match="without an API key"):
        create_app(project / "params.yaml", host="0.0.0.0")
    (project / "keys.txt").write_text("# team keys\nk-file\n")
    _set(project, "serve", api_key_file="keys.txt")
    monkeypatch.setenv("WAFERFLOW_API_KEYS", "k-env, ")
    from waferflow.config import load_params

    assert api_keys(load_params(project / "params.yaml").serve, project) == {"k-env", "k-file"}
    app = create_app(project / "params.yaml", host="0.0.0.0", poll=False)  # the key guards it; tested on loopback
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        grid = {"die_grid": probe_grid(16).tolist()}
        assert client.post("/v1/predict", json=grid).status_code == 401
        assert client.post("/v1/predict", json=grid, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/v1/predict", json=grid, headers={"X-API-Key": "k-file"}).status_code == 200
        assert client.get("/metrics").status_code == 401 and client.get("/healthz").status_code == 200
