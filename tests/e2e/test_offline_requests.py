"""Offline plant (issue 20): the app asks nothing of any host but its own.

Starts `streamlit run app.py` on a workspace holding a trained classifier and an anomaly run (the
server and browser fixtures of test_browser.py), visits every page, Inspect with the sample new
parts, and records every request the browser makes. Any host other than the app's own fails the
test with the requests listed (a favicon or icon from a font host, a CDN script...).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, app_url, idle, images  # noqa: F401 - fixtures reused

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PAGES = ("", "Data", "Train", "Compare", "Inspect")
TRAIN = """
import sys
from pathlib import Path
from inspector import TrainConfig, train
from inspector.workspace import Workspace

images, workspace = Path(sys.argv[1]), Workspace(sys.argv[2])
workspace.load_sample_data(images)
train(images / "train", TrainConfig(strategy="linear_probe", image_size=64, max_folds=3), runs_dir=workspace.runs_dir)
train(images / "good_parts", TrainConfig(task="anomaly", image_size=64), runs_dir=workspace.runs_dir)
"""


@pytest.fixture
def trained(tmp_path, images):  # noqa: F811 - the fixture imported above
    """The workspace app_url serves (tmp_path/workspace), with sample data and two trained runs.
    Trained in a child process: this one keeps no torch threads beside the browser."""
    subprocess.run([sys.executable, "-c", TRAIN, str(images), str(tmp_path / "workspace")], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return tmp_path / "workspace"


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_every_page_requests_only_the_apps_own_host(trained, app_url, browser_page):  # noqa: F811
    page, own = browser_page, urlsplit(app_url).netloc
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    for name in PAGES:
        page.goto(f"{app_url}/{name}")
        page.locator('[data-testid="stSidebarNav"], [data-testid="stSidebar"]').first.wait_for()
        idle(page)
        if name == "Inspect":  # the model's verdicts, charts and heatmaps too
            page.get_by_role("button", name="Use the sample new parts").click()
            page.get_by_text(re.compile(r"\d+ images: ")).first.wait_for(timeout=120_000)
            idle(page, 120_000)
        page.wait_for_timeout(1000)  # late requests: favicons, fonts, icons
    assert len(requests) > 20  # the pages really loaded (scripts, styles, websocket, media)
    foreign = sorted({url for url in requests if urlsplit(url).scheme in ("http", "https", "ws", "wss")
                      and urlsplit(url).netloc != own})
    assert not foreign, "requests to other hosts (the plant has no internet):\n" + "\n".join(foreign)
