"""The README's screenshots of the service's pages, over this project's own registry and queue
(after `make pipeline`): Debian's chromium through Selenium, as the browser test drives it.

Predicts a few maps of the generated test split (never real maps: screenshots go into git), shows
the review queue without answering and the models page without promoting; the service's
predictions go to a scratch prediction log, not the project's.

    .venv/bin/python docs/screenshots.py [--params params.yaml] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from waferflow.config import load_params
from waferflow.data.records import read_records, write_records
from waferflow.layout import Layout
from waferflow.serve.app import create_app, registry_models, running

SHOWN_PER_CLASS = 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = ap.parse_args()
    params_path = args.params.resolve()
    p, root = load_params(params_path), params_path.parent
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="waferflow-shots-") as tmp:
        seen, sample = set(), []
        for rec in read_records(Layout(root).generated / "test.parquet"):
            if rec.label not in seen:
                seen.add(rec.label)
                sample.append(rec)
        maps = write_records(sample, Path(tmp) / "generated-test-sample.parquet")
        scratch = p.model_copy(update={"drift": p.drift.model_copy(update={"prediction_log": f"{tmp}/log"})})
        app = create_app(params_path, models=registry_models(scratch, root), poll=False)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
            options.add_argument(arg)
        with (
            running(app) as url,
            webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options) as chrome,
        ):
            wait = WebDriverWait(chrome, 120)
            chrome.get(f"{url}/ui/predict.html")
            chrome.find_element(By.ID, "files").send_keys(str(maps))
            chrome.find_element(By.ID, "predict").click()
            wait.until(lambda d: "classified" in d.find_element(By.ID, "status").text)
            chrome.save_screenshot(str(args.out / "predict.png"))
            chrome.get(f"{url}/ui/review.html")
            image = chrome.find_element(By.ID, "wafer-image")
            wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
            chrome.save_screenshot(str(args.out / "review.png"))
            chrome.get(f"{url}/ui/models.html")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-alias=champion] h2"))
            chrome.save_screenshot(str(args.out / "models.png"))
    print(f"screenshots of {len(sample)} generated test maps and the project's registry in {args.out}")


if __name__ == "__main__":
    main()
