"""The API behind the pages: predict cards, the review queue through `label import`'s checks,
the registry with promote/rollback behind the API key."""

import base64

import httpx
import pandas as pd
from mlflow import MlflowClient

from tests.serve.conftest import versions
from waferflow.active.labels import read_store
from waferflow.inference.report import CSV_COLUMNS
from waferflow.serve.app import create_app, running
from waferflow.serve.models import probe_grid


def test_predict_with_images_gives_each_card_its_picture_and_the_csv(served):
    _, client = served
    answer = client.post(
        "/v1/predict?images=true&mask=false", json={"wafers": [{"die_grid": probe_grid(30).tolist()}] * 2}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    for wafer in body["wafers"]:
        assert wafer["overlay_png"].startswith("data:image/png;base64,")
        assert base64.b64decode(wafer["overlay_png"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    lines = body["csv"].splitlines()
    assert lines[0].split(",") == CSV_COLUMNS and len(lines) == 3
    assert (
        "overlay_png" not in client.post("/v1/predict", json={"die_grid": probe_grid(30).tolist()}).json()["wafers"][0]
    )


def test_similar_wafers_without_an_index_is_a_503_that_says_how_to_build_it(served):
    _, client = served
    answer = client.post("/v1/similar", json={"die_grid": probe_grid(30).tolist()})
    assert answer.status_code == 503 and "dvc repro index" in answer.json()["detail"]


def test_pages_are_served_with_a_strict_content_policy(served):
    _, client = served
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/predict.html"
    for page in ("predict", "review", "models"):
        answer = client.get(f"/ui/{page}.html")
        assert answer.status_code == 200 and f"{page}.js" in answer.text
        assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert client.get("/ui/../app.py").status_code == 404


def test_review_answers_meet_label_imports_checks_and_never_overwrite(queued):
    app = create_app(queued / "params.yaml", poll=False)
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        queue = client.get("/v1/review/queue").json()
        assert (queue["labeled"], queue["total"], len(queue["classes"])) == (0, 6, 9)
        first, second = queue["wafers"][0], queue["wafers"][1]
        image = client.get(first["image"])
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
        assert client.get("/v1/review/images/99").status_code == 404

        stored = client.post(
            "/v1/review/labels", json={"wafer_id": first["wafer_id"], "label": "edge loc", "annotator": "ana"}
        )
        assert stored.status_code == 200 and stored.json()["stored"], stored.text
        again = client.post(
            "/v1/review/labels", json={"wafer_id": first["wafer_id"], "label": "Edge-Loc", "annotator": "bo"}
        )
        assert again.status_code == 200 and again.json()["unchanged"] and not again.json()["stored"]

        refused = {
            "conflict": ({"wafer_id": first["wafer_id"], "label": "Scratch", "annotator": "bo"}, "not overwritten"),
            "unknown class": ({"wafer_id": second["wafer_id"], "label": "Blob", "annotator": "ana"}, "unknown class"),
            "unknown wafer": (
                {"wafer_id": "NOLOT:9", "label": "Loc", "annotator": "ana"},
                "not in the annotation queue",
            ),
            "no annotator": ({"wafer_id": second["wafer_id"], "label": "Loc", "annotator": " "}, "annotator"),
        }
        for case, (answer, reason) in refused.items():
            response = client.post("/v1/review/labels", json=answer)
            assert response.status_code == 422, case
            assert reason in str(response.json()["detail"]), (case, response.text)

        store = read_store(queued / "data/labels")
        assert len(store) == 1
        row = store.iloc[0]
        assert (f"{row['lot_id']}:{row['wafer_id']}", row["label"], row["annotator"]) == (
            first["wafer_id"],
            "Edge-Loc",
            "ana",
        )
        assert "/data/labels/web/" in row["source_file"]
        quarantined = list((queued / "data/quarantine/labels").glob("*.csv"))
        assert len(quarantined) == 3 and any("not overwritten" in pd.read_csv(q).to_string() for q in quarantined)
        after = client.get("/v1/review/queue").json()
        assert after["labeled"] == 1 and after["wafers"][0]["stored"]["label"] == "Edge-Loc"


def test_registry_page_data_and_promotion_only_with_an_api_key(project, served, monkeypatch):
    _, client = served
    before = versions(project)
    registry = client.get("/v1/registry").json()
    roles = {r["alias"]: r for r in registry["roles"]}
    assert roles["champion"]["version"] == before["champion"] and roles["champion"]["served_as"] == "champion"
    assert roles["challenger"]["served_as"] == "challenger" and roles["previous"]["version"] is None
    assert roles["champion"]["mlflow"]["version"].startswith("http://127.0.0.1:5000/#/models/monitor-test-model/")
    no_key = client.post("/v1/registry/promote", json={"version": before["challenger"]})
    assert no_key.status_code == 403 and "WAFERFLOW_API_KEYS" in no_key.json()["detail"]

    monkeypatch.setenv("WAFERFLOW_API_KEYS", "s3cret")
    app = create_app(project / "params.yaml", poll=False)
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as keyed:
        assert keyed.post("/v1/registry/promote", json={"version": before["challenger"]}).status_code == 401
        key = {"X-API-Key": "s3cret"}
        promoted = keyed.post("/v1/registry/promote", json={"version": before["challenger"]}, headers=key)
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["served"] == before["challenger"] == versions(project)["champion"]
        tags = MlflowClient().get_model_version("monitor-test-model", before["challenger"]).tags
        assert tags["gate.decision"] == "manual_promote" and "models page" in tags["gate.reason"]
        roles = {r["alias"]: r for r in keyed.get("/v1/registry", headers=key).json()["roles"]}
        assert roles["previous"]["version"] == before["champion"]
        back = keyed.post("/v1/registry/rollback", headers=key)
        assert back.status_code == 200 and back.json()["served"] == before["champion"] == versions(project)["champion"]
        assert keyed.post("/v1/registry/rollback", headers=key).status_code == 409  # no previous left
