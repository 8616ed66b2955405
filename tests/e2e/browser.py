"""A real headless Chromium for the page tests: Debian's `chromium` driven by `chromium-driver`.

`ensure_chromium()` installs both with apt-get when they are missing and we are root (CI starts
from a machine with only Python); elsewhere it says what to install. Screenshots go to
`bench/results/screenshots/` (not committed), or to $SCREENSHOT_DIR.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless as root on a closed network: no sandbox, no GPU, nothing that phones home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or ROOT / "bench" / "results" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _installed() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def ensure_chromium() -> None:
    """Debian's chromium and chromium-driver, installed now if missing (as CI does, as root).

    Test workers run in parallel: one installs while the others wait on a lock file, then see it done.
    """
    if _installed():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: sudo apt-get install -y chromium chromium-driver")
    with open(Path(tempfile.gettempdir()) / "codebase-mcp-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            _apt_install()


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


class Page:
    """One browser tab with polling helpers that let the event loop (and the servers) run meanwhile."""

    def __init__(self, driver: webdriver.Chrome, name: str) -> None:
        self.driver = driver
        self.name = name
        self.shots: list[Path] = []

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    async def until(self, script: str, *args: Any, within: float = 30.0, what: str = "") -> Any:
        """Poll `script` (a JS function body returning a value) until it returns something truthy."""
        deadline = time.monotonic() + within
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                self.shot("timeout")
                raise TimeoutError(f"page condition not met within {within}s: {what or script}")
            await asyncio.sleep(0.05)

    def shot(self, label: str) -> Path:
        path = screenshot_dir() / f"{self.name}-{len(self.shots) + 1:02d}-{label}.png"
        self.driver.save_screenshot(str(path))
        self.shots.append(path)
        print(f"screenshot: {path}")
        return path

    def job_state(self, job_id: str) -> dict[str, Any] | None:
        state: dict[str, Any] | None = self.js(
            """const el = document.getElementById('job-' + arguments[0]);
               return el ? {status: el.dataset.status, pct: +el.dataset.pct, version: +el.dataset.version,
                            text: el.innerText} : null;""",
            job_id,
        )
        return state


@pytest.fixture
def chrome(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    ensure_chromium()
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1100"):
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(10)
    page = Page(driver, request.node.name.removeprefix("test_"))
    try:
        yield page
    finally:
        driver.quit()
