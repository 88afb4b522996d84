"""A real browser for the tests: headless Chromium (Debian's `chromium` and `chromium-driver`, installed
by `make`), driven with Selenium; screenshots land in ``test-artifacts/``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTEFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium session (the system's browser and driver: nothing is downloaded)."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "run `make test`: it installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save the page as ``test-artifacts/<name>.png``; its path."""
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def dashboard_url(data_dir: Path, timeout_s: float = 120.0) -> str:
    """The address a running `lalin up` published for its dashboard in ``data_dir/runtime.json`` (ends with /)."""
    deadline, url = time.monotonic() + timeout_s, None
    while url is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):  # not written yet, or being replaced
            url = json.loads((data_dir / "runtime.json").read_text()).get("web")
        time.sleep(0.2)
    assert url, "lalin up did not publish its dashboard's address"
    return str(url)
