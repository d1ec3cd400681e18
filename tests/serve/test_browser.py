"""The pages in a real browser: Debian's chromium driven by Selenium through chromedriver (both
installed by `make test`: browser downloads are blocked here). Clicks through predict -> review ->
label stored -> models -> promote. Screenshots go to $WAFERFLOW_SCREENSHOTS when set (the README's)."""

import os
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.serve.conftest import versions
from waferflow.active.labels import read_store
from waferflow.classes import CLASSES
from waferflow.data.records import write_records
from waferflow.serve.app import create_app, running

KEY = "browser-test-key"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("Debian's chromium and chromium-driver are needed: `make test` installs them (make browser)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    with webdriver.Chrome(service=Service(driver), options=options) as chrome:
        chrome.implicitly_wait(0)
        yield chrome


def _wait(driver, condition, what: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, message=f"waited {timeout} s for {what}")


def _text_in(css: str, text: str):
    from selenium.webdriver.common.by import By

    def seen(driver):
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found and text in found[0].text

    return seen


def _shoot(driver, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("WAFERFLOW_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(folder / f"{name}.png"))
    assert (folder / f"{name}.png").stat().st_size > 10_000


def test_click_through_predict_review_models(queued, browser, small_records, tmp_path, monkeypatch):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    monkeypatch.setenv("WAFERFLOW_API_KEYS", KEY)
    maps = [
        write_records(small_records[:9], tmp_path / "lot-a.parquet"),
        write_records(small_records[9:12], tmp_path / "lot-b.parquet"),
    ]
    before = versions(queued)
    app = create_app(queued / "params.yaml", poll=False)
    with running(app) as url:
        # Predict: the key, two files, a card per wafer with its picture and class
        browser.get(f"{url}/")
        _wait(browser, lambda d: d.find_elements(By.ID, "api-key"), "the navigation bar")
        browser.find_element(By.ID, "api-key").send_keys(KEY, Keys.TAB)
        browser.find_element(By.ID, "files").send_keys("\n".join(str(m) for m in maps))
        browser.find_element(By.ID, "predict").click()
        _wait(browser, _text_in("#status", "12 wafer(s) classified"), "the predictions")
        cards = browser.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 12
        for card in cards:
            assert card.find_element(By.CSS_SELECTOR, ".predicted").text.split(" · ")[0] in CLASSES
            badge = card.find_element(By.CSS_SELECTOR, ".triage .badge")  # the open-set triage, with its reason
            assert badge.text in ("PASS", "REVIEW", "REJECT") and badge.get_attribute("title")
            assert (
                browser.execute_script("return arguments[0].naturalWidth", card.find_element(By.TAG_NAME, "img")) > 100
            )
        assert browser.find_element(By.ID, "downloads").is_displayed()
        # similar past wafers: this project has no index, and the card says so instead of hanging
        _wait(browser, _text_in(".card .similar", "similar past wafers: none"), "the similar-wafer line")
        # why?: the explanation picture of one card (map | mask | activation | novelty)
        cards[1].find_element(By.CSS_SELECTOR, ".why").click()
        picture = _wait(browser, lambda d: cards[1].find_elements(By.CSS_SELECTOR, ".explanation img"), "the picture")[
            0
        ]
        _wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", picture) > 800, "its pixels")
        _shoot(browser, tmp_path, "predict")

        # Review: a name, key 1 stores the first class; a different answer for it is refused
        browser.find_element(By.LINK_TEXT, "Review queue").click()
        _wait(browser, _text_in("#progress", "0/6 labeled"), "the queue")
        browser.find_element(By.ID, "annotator").send_keys("ana", Keys.TAB)
        wafer = browser.find_element(By.ID, "wafer-id").text
        image = browser.find_element(By.ID, "wafer-image")
        _wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 100, "the wafer image")
        ActionChains(browser).send_keys("1").perform()
        _wait(browser, _text_in("#progress", "1/6 labeled"), "the stored label")
        assert "stored" in browser.find_element(By.ID, "status").text
        store = read_store(queued / "data/labels")
        assert [(f"{r.lot_id}:{r.wafer_id}", r.label, r.annotator) for r in store.itertuples()] == [
            (wafer, CLASSES[0], "ana")
        ]
        ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
        _wait(browser, _text_in("#wafer-id", wafer), "the labeled wafer again")
        ActionChains(browser).send_keys("2").perform()
        _wait(browser, _text_in("#status", "not overwritten"), "the refusal")
        assert read_store(queued / "data/labels")["label"].tolist() == [CLASSES[0]]
        _shoot(browser, tmp_path, "review")

        # Models: the roles, and a promotion with the key
        browser.find_element(By.LINK_TEXT, "Models").click()
        _wait(browser, lambda d: d.find_elements(By.ID, "promote"), "the promote button")
        champion = browser.find_element(By.CSS_SELECTOR, "[data-alias=champion] h2").text
        assert f"version {before['champion']}" in champion and "serving as champion" in champion
        browser.find_element(By.ID, "promote").click()
        _wait(browser, _text_in("#status", f"serving {before['challenger']}"), "the promotion")
        assert versions(queued)["champion"] == before["challenger"]
        _wait(browser, lambda d: d.find_elements(By.ID, "rollback"), "the rollback button")
        _shoot(browser, tmp_path, "models")
        tags = MlflowClient().get_model_version("monitor-test-model", before["challenger"]).tags
        assert tags["gate.decision"] == "manual_promote"
